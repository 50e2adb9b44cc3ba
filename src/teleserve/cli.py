"""The ``teleserve`` command line. Every command a script calls takes ``--json``."""

from __future__ import annotations

import gc
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from teleserve.cli_support import (
    JsonOption,
    console,
    engine_for,
    fail,
    in_unit_of_work,
    out,
    require_schema,
)
from teleserve.core.settings import Mode, Settings, get_settings, use_settings

if TYPE_CHECKING:  # imported where used: the CLI starts fast
    from teleserve.demo.customers import KioskPlan
    from teleserve.demo.fleet import DemoFleet
    from teleserve.gateway.processes import GatewayProcesses
    from teleserve.gateway.server import Bound, GatewayThread

app = typer.Typer(
    help="Teleserve: telecom customer service and self-service.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema, backup and restore.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
user_app = typer.Typer(help="Staff users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(audit_app, name="audit")
app.add_typer(user_app, name="user")
api_client_app = typer.Typer(help="API clients (OAuth2 client credentials).", no_args_is_help=True)
app.add_typer(api_client_app, name="api-client")
terminal_app = typer.Typer(
    help="Self-service terminals (kiosks) and their keys.", no_args_is_help=True
)
app.add_typer(terminal_app, name="terminal")


def _sqlite_path(url: str) -> Path:
    return Path(url.split("sqlite:///", 1)[1])


# -- db ------------------------------------------------------------------------------


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOption = False) -> None:
    """Create or upgrade the schema to the newest migration."""
    from teleserve.core import migrate

    settings = get_settings()
    migrate.upgrade(settings.database_url)
    head = migrate.head_revision(settings.database_url)
    out({"ok": True, "revision": head}, as_json, f"schema at revision {head}")


@db_app.command("backup")
def db_backup(
    target: Annotated[Path, typer.Argument(help="File to write the backup to.")],
    as_json: JsonOption = False,
) -> None:
    """Online backup of the SQLite database (safe while the server runs)."""
    settings = get_settings()
    if not settings.is_sqlite:
        fail(
            "PostgreSQL is backed up with its own tools: "
            "pg_dump --format=custom --file=teleserve.dump <database> "
            "(and pg_restore to restore), or continuous archiving with a base backup "
            "and WAL for point-in-time recovery",
            as_json,
            code=2,
        )
    source = _sqlite_path(settings.database_url)
    if not source.exists():
        fail(f"no database at {source}", as_json)
    if target.exists():
        fail(f"{target} exists; refusing to overwrite it", as_json)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst, pages=1024)
    with sqlite3.connect(target) as check:
        result = check.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        fail(f"backup failed its integrity check: {result}", as_json)
    out(
        {"ok": True, "backup": str(target), "bytes": target.stat().st_size},
        as_json,
        f"backed up {source} to {target} ({target.stat().st_size:,} bytes, integrity ok)",
    )


@db_app.command("restore")
def db_restore(
    source: Annotated[Path, typer.Argument(help="A backup written by 'teleserve db backup'.")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace the current database.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Replace the SQLite database with a backup (stop the server first)."""
    settings = get_settings()
    if not settings.is_sqlite:
        fail("restore PostgreSQL with pg_restore from a pg_dump backup", as_json, code=2)
    if not source.exists():
        fail(f"no backup at {source}", as_json)
    with sqlite3.connect(source) as check:
        result = check.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        fail(f"{source} failed its integrity check: {result}", as_json)
    if not yes:
        fail("restoring replaces the current database: add --yes", as_json, code=2)
    target = _sqlite_path(settings.database_url)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    out({"ok": True, "restored": str(target)}, as_json, f"restored {target} from {source}")


# -- audit ---------------------------------------------------------------------------


@audit_app.command("verify")
def audit_verify(as_json: JsonOption = False) -> None:
    """Check every audit chain against the latest signed checkpoint."""
    from teleserve.core import audit

    settings = get_settings()
    report = audit.verify(
        engine_for(settings), settings.audit_checkpoint_dir, settings.audit_signing_key_file
    )
    if as_json:
        out(report.as_dict(), True)
    elif report.ok:
        console.print(
            f"[green]audit log intact[/green]: {report.records:,} records in "
            f"{report.chains} chains; checkpoint {report.checkpoint or 'none yet'}"
        )
    else:
        first = report.first_problem
        assert first is not None
        console.print(f"[red]audit log broken[/red]: {first.message}")
        for problem in report.problems[1:]:
            console.print(f"  also: {problem.message}")
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint(as_json: JsonOption = False) -> None:
    """Sign every chain's head and write it outside the database."""
    from teleserve.core import audit

    settings = get_settings()
    path = audit.checkpoint(
        engine_for(settings), settings.audit_checkpoint_dir, settings.audit_signing_key_file
    )
    out({"ok": True, "checkpoint": str(path)}, as_json, f"checkpoint written to {path}")


# -- serve / demo ----------------------------------------------------------------------


def _run_server(
    settings: Settings,
    role: str,
    banner: list[str] | None = None,
    on_listening: Callable[[Bound | None], Callable[[], None]] | None = None,
) -> None:
    """Run the HTTP app and/or the outbox worker in this process until interrupted.

    ``on_listening`` (the demo's kiosks) is called once the gateway listens, with its
    bound addresses (``None`` without a gateway); what it returns is called first on the
    way out, while the gateway still answers."""
    import threading

    import uvicorn

    from teleserve import tasks
    from teleserve.core import outbox, worker
    from teleserve.core.logging import configure_logging
    from teleserve.core.wal import start_checkpointer
    from teleserve.core.worker import run_forever
    from teleserve.web.app import create_app

    settings.check()
    configure_logging(settings.log_level, json_output=settings.log_json)
    engine = engine_for(settings)
    require_schema(settings, engine)
    tasks.load_all()
    # Every handler of this release is registered now: the events none of them hear are
    # written done (core.outbox), not left for the worker to acknowledge.
    outbox.acknowledge_at_insert(worker.registry.unheard_events())
    checkpointer = (
        start_checkpointer(engine.url.database, interval_ms=settings.sqlite_checkpoint_interval_ms)
        if settings.is_sqlite
        else None
    )
    stop = threading.Event()
    worker_thread = None
    if role in ("all", "worker"):
        worker_thread = threading.Thread(
            target=run_forever, args=(engine, stop), name="outbox-worker", daemon=True
        )
        worker_thread.start()
    gateway: GatewayThread | GatewayProcesses | None = None
    bound: Bound | None = None
    if role in ("all", "gateway"):
        from teleserve.gateway.processes import GatewayProcesses
        from teleserve.gateway.server import GatewayThread

        if settings.gateway_processes > 0:
            gateway = GatewayProcesses(engine, settings)
        else:
            gateway = GatewayThread(engine, settings)
        bound = gateway.start()
        fronts = settings.gateway_processes
        console.print(
            f"TSP/1 gateway on {bound.host}: business :{bound.business_port}, "
            f"management :{bound.management_port}"
            + (" (TLS)" if gateway.tls else "")
            + (f", {fronts} front process{'es' if fronts > 1 else ''}" if fronts else "")
        )
    for line in banner or []:
        console.print(line)
    # What start-up built (modules, metadata, caches) lives as long as the process: kept
    # out of the cyclic collector's full passes, which otherwise walk it all again and
    # again under load for nothing (docs/gateway.md, "Processes").
    gc.freeze()
    stop_extra: Callable[[], None] | None = None
    # SIGTERM (a service manager's stop) ends the server the way Ctrl-C does, through
    # the clean-up below: the money writer commits what it holds and the gateway's
    # front processes are stopped. (uvicorn re-raises the signal it caught once it has
    # shut down; without this handler that killed the process before the clean-up.)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if on_listening is not None:
            stop_extra = on_listening(bound)
        if role in ("all", "http"):
            uvicorn.run(
                create_app(settings, engine),
                host=settings.http_host,
                port=settings.http_port,
                log_config=None,
                access_log=False,
            )
        else:
            stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if stop_extra is not None:
            stop_extra()
        stop.set()
        if gateway is not None:
            gateway.stop()
        if worker_thread is not None:
            worker_thread.join(timeout=10)
        if checkpointer is not None:
            checkpointer.stop()
        outbox.acknowledge_at_insert(())
        engine.dispose()


@app.command()
def serve(
    role: Annotated[
        str,
        typer.Option(help="all (one process), http, gateway or worker (scale-out on PostgreSQL)."),
    ] = "all",
    host: Annotated[str | None, typer.Option(help="HTTP listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port.")] = None,
) -> None:
    """Run the server: HTTP app, TSP/1 gateway and outbox worker."""
    if role not in ("all", "http", "gateway", "worker"):
        console.print(f"[red]unknown role {role!r}[/red]: all, http, gateway or worker")
        raise typer.Exit(2)
    settings = get_settings()
    updates = {k: v for k, v in {"http_host": host, "http_port": port}.items() if v}
    settings = settings.model_copy(update=updates)
    if settings.is_sqlite and role != "all":
        console.print("[red]SQLite runs as one process: use --role all[/red]")
        raise typer.Exit(2)
    _run_server(settings, role)


@app.command()
def seed(
    customers: Annotated[
        int | None, typer.Option(help="How many customers (default: settings.seed_customers).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fill the database with a realistic demo operator (through the services' batch APIs)."""
    from teleserve.demo.seed import seed_database

    settings = get_settings()
    engine = engine_for(settings)
    require_schema(settings, engine)
    result = seed_database(
        engine,
        customers=settings.seed_customers if customers is None else customers,
        progress=not as_json,
    )
    out(result.as_dict(), as_json, result.summary())


@app.command()
def demo(
    customers: Annotated[int, typer.Option(help="Demo customers to create.")] = 10_000,
    database: Annotated[Path, typer.Option(help="SQLite file (rebuilt).")] = Path(
        "teleserve-demo.db"
    ),
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    fresh: Annotated[bool, typer.Option(help="Rebuild the database from nothing.")] = True,
    kiosks_per_hall: Annotated[
        int, typer.Option(help="Simulated kiosks in every hall (0: none).", min=0, max=20)
    ] = 2,
    kiosk_ui_port: Annotated[
        int, typer.Option(help="Touch UI port of the kiosk you can use.", min=1, max=65535)
    ] = 8800,
    pace: Annotated[
        float, typer.Option(help="Seconds between simulated customers at each kiosk.", min=0.5)
    ] = 6.0,
    cash_collect_at: Annotated[
        int | None, typer.Option(hidden=True, help="Collect a kiosk's cash box at N notes.")
    ] = None,
) -> None:
    """The newcomer's first command: fresh SQLite database, demo data, kiosks, the server."""
    from teleserve.core import migrate
    from teleserve.demo import kiosks as demo_kiosks
    from teleserve.demo.fleet import DemoFleet
    from teleserve.demo.seed import DEMO_PASSWORD, seed_database

    if kiosks_per_hall and kiosk_ui_port == port:
        console.print("[red]--kiosk-ui-port must differ from --port[/red]")
        raise typer.Exit(2)
    folder = demo_kiosks.kiosk_folder(database)
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        demo_kiosks.reset_folder(folder)
    settings = Settings(
        mode=Mode.demo,
        database_url=f"sqlite:///{database}",
        http_port=port,
        log_json=False,
    )
    use_settings(settings)
    # SIGTERM stops the demo like Ctrl-C (the kiosks with it): without this, uvicorn
    # re-raises SIGTERM after its shutdown and the process ends before cleaning up.
    signal.signal(signal.SIGTERM, _interrupt)
    migrate.upgrade(settings.database_url)
    engine = engine_for(settings)
    result = seed_database(engine, customers=customers, progress=True) if fresh else None
    plans = (
        demo_kiosks.register_demo_kiosks(engine, folder, kiosks_per_hall) if kiosks_per_hall else []
    )
    ui_kiosk = plans[0] if plans else None
    fleet_file = (
        demo_kiosks.write_fleet_file(engine, folder, plans, ui_kiosk.terminal_id)
        if ui_kiosk is not None
        else None
    )
    engine.dispose()
    fleet = DemoFleet(report=lambda message: console.print(f"[yellow]{message}[/yellow]"))

    def start_kiosks(bound: Bound | None) -> Callable[[], None]:
        """Once the gateway listens: the kiosks, then what the demo serves."""
        kiosk_rows: list[tuple[str, str]] = []
        if ui_kiosk is not None and fleet_file is not None and bound is not None:
            kiosk_rows = _start_demo_kiosks(
                fleet,
                bound,
                folder,
                ui_kiosk,
                fleet_file,
                len(plans),
                kiosk_ui_port,
                pace,
                cash_collect_at,
            )
        base = f"http://{settings.http_host}:{port}"
        table = Table(title="Teleserve demo", show_header=False)
        table.add_row("staff console", f"{base}/console/")
        for label, value in kiosk_rows:
            table.add_row(label, value)
        if bound is not None:
            table.add_row(
                "TSP/1 gateway",
                f"{bound.host} business :{bound.business_port}, "
                f"management :{bound.management_port}",
            )
        table.add_row("health", f"{base}/healthz")
        table.add_row("readiness", f"{base}/readyz")
        table.add_row("metrics", f"{base}/metrics")
        table.add_row("API docs", f"{base}/docs")
        table.add_row("database", str(database))
        if result is not None:
            table.add_row("data", result.summary())
            for login in result.logins:
                table.add_row("login", f"{login} / {DEMO_PASSWORD}")
        console.print(table)
        console.print("Ctrl-C stops the server and the kiosks.")
        return fleet.stop

    try:
        _run_server(settings, "all", on_listening=start_kiosks)
    finally:
        fleet.stop()  # again: also when the start itself was interrupted half-way


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _start_demo_kiosks(
    fleet: DemoFleet,
    bound: Bound,
    folder: Path,
    ui_kiosk: KioskPlan,
    fleet_file: Path,
    count: int,
    ui_port: int,
    pace: float,
    collect_at: int | None,
) -> list[tuple[str, str]]:
    """Start the newcomer's kiosk (``teleserve kiosk`` with its UI) and the simulated
    customers' process; return the banner's rows about them."""
    import importlib.util

    from teleserve.demo.fleet import customers_command, kiosk_command

    host = bound.host if bound.host not in ("0.0.0.0", "::", "") else "127.0.0.1"  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    ports = (bound.business_port, bound.management_port)
    fleet.start(
        ui_kiosk.terminal_id,
        kiosk_command(ui_kiosk, host, *ports, ui_port),
        folder / f"{ui_kiosk.terminal_id}.log",
    )
    if count > 1:
        fleet.start(
            "simulated customers",
            customers_command(fleet_file, host, *ports, pace, collect_at),
            folder / "customers.log",
        )
    ui = f"http://127.0.0.1:{ui_port}"
    # A regular package (not a half-written namespace one): the agent serves its UI.
    spec = importlib.util.find_spec("teleserve.kiosk.ui")
    has_ui = spec is not None and spec.origin is not None
    rows = [
        (
            "kiosk UI",
            f"{ui}  ({ui_kiosk.terminal_id})"
            if has_ui
            else f"{ui}  ({ui_kiosk.terminal_id}; the touch UI arrives with its release)",
        )
    ]
    if has_ui:
        rows.append(("kiosk demo panel", f"{ui}/panel"))
    rows.append(
        (
            "kiosks",
            f"{count} simulated kiosks running: {ui_kiosk.terminal_id} for you"
            + (
                f", {count - 1} with simulated customers paying about every {pace:g} s"
                if count > 1
                else ""
            ),
        )
    )
    rows.append(("kiosk keys and logs", f"{folder}/ (keys readable by you only)"))
    return rows


# -- users -----------------------------------------------------------------------------


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option(help="Login name.")],
    name: Annotated[str, typer.Option(help="Display name.")],
    org: Annotated[str, typer.Option(help="Code of the organisation unit (e.g. GZ01).")],
    role: Annotated[list[str], typer.Option(help="A role; repeat for several.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="TELESERVE_NEW_USER_PASSWORD",
            help="Prompted for when not given (or from TELESERVE_NEW_USER_PASSWORD).",
        ),
    ],
    as_json: JsonOption = False,
) -> None:
    """Create a staff user (administrators who need MFA enrol at first login)."""
    from teleserve.iam import service as iam

    def create(uow: Any) -> Any:
        unit = iam.get_org_unit_by_code(uow, org)
        return iam.create_user(uow, username, name, password, unit.id, role)

    user = in_unit_of_work(create, as_json)
    out(
        {"ok": True, "user_id": user.id, "username": user.username, "org": org, "roles": role},
        as_json,
        f"created {user.username} in {org} with roles {', '.join(role)}",
    )


@api_client_app.command("create")
def api_client_create(
    name: Annotated[str, typer.Option(help="What the integration is.")],
    org: Annotated[str, typer.Option(help="Code of the organisation unit whose data it sees.")],
    scopes: Annotated[str, typer.Option(help="Space- or comma-separated scopes.")],
    as_json: JsonOption = False,
) -> None:
    """Register an API client; its secret is printed once and never stored in clear."""
    from teleserve.iam import service as iam

    def create(uow: Any) -> Any:
        unit = iam.get_org_unit_by_code(uow, org)
        return iam.create_api_client(uow, name, unit.id, scopes.replace(",", " "))

    created = in_unit_of_work(create, as_json)
    client = created.client
    out(
        {
            "ok": True,
            "client_id": client.client_id,
            "client_secret": created.secret,
            "org": org,
            "scopes": list(client.scopes),
        },
        as_json,
        f"client_id {client.client_id}\nclient_secret {created.secret}\n"
        "(the secret is shown this once)",
    )


# -- terminals -------------------------------------------------------------------------

TerminalIdOption = Annotated[str, typer.Option("--id", help="The terminal id (TSP/1 header).")]
ReasonOption = Annotated[str, typer.Option(help="Why (kept with the status and audited).")]


def _terminal_json(terminal: Any) -> dict[str, Any]:
    return dict(terminal.model_dump(mode="json"))


@terminal_app.command("register")
def terminal_register(
    terminal_id: TerminalIdOption,
    site: Annotated[str, typer.Option(help="Code of the site or hall it stands at.")],
    name: Annotated[str, typer.Option(help="Display name (default: the id).")] = "",
    address: Annotated[str, typer.Option(help="Where it stands.")] = "",
    description: Annotated[str, typer.Option(help="Anything staff should know.")] = "",
    device_mode: Annotated[str, typer.Option(help="sim (demo mode only) or xfs4iot.")] = "xfs4iot",
    as_json: JsonOption = False,
) -> None:
    """Register a terminal; its master key is printed once and never shown again."""
    from teleserve.terminals import service as terminals

    spec = {
        "terminal_id": terminal_id,
        "site": site,
        "name": name,
        "address": address,
        "description": description,
        "device_mode": device_mode,
    }
    created = in_unit_of_work(lambda uow: terminals.register_terminal(uow, spec), as_json)
    out(
        {
            "ok": True,
            "terminal": _terminal_json(created.terminal),
            "master_key": created.master_key,
            "key_check_value": created.key_check_value,
        },
        as_json,
        f"registered {terminal_id} at {site}\nmaster_key {created.master_key}\n"
        f"check value {created.key_check_value} (the key is shown this once)",
    )


@terminal_app.command("rotate-key")
def terminal_rotate_key(
    terminal_id: TerminalIdOption,
    grace_hours: Annotated[
        float | None,
        typer.Option(help="How long the old key stays valid (default: the setting; 0: at once)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Issue a new master key (printed once); the old one stays valid for a grace period."""
    from teleserve.terminals import service as terminals

    rotated = in_unit_of_work(
        lambda uow: terminals.rotate_master_key(uow, terminal_id, grace_hours=grace_hours),
        as_json,
    )
    until = rotated.previous_key_valid_until
    out(
        {"ok": True, **rotated.model_dump(mode="json")},
        as_json,
        f"rotated the master key of {terminal_id}\nmaster_key {rotated.master_key}\n"
        f"check value {rotated.key_check_value} (the key is shown this once)\nprevious key "
        + (f"valid until {until.isoformat()}" if until else "ended"),
    )


def _terminal_status_command(verb: str, action_name: str, doc: str) -> None:
    def command(
        terminal_id: TerminalIdOption, reason: ReasonOption = "", as_json: JsonOption = False
    ) -> None:
        from teleserve.terminals import service as terminals

        action = getattr(terminals, action_name)
        terminal = in_unit_of_work(lambda uow: action(uow, terminal_id, reason), as_json)
        out(
            {"ok": True, "terminal": _terminal_json(terminal)},
            as_json,
            f"{terminal_id} is now {terminal.status.value}",
        )

    command.__doc__ = doc
    terminal_app.command(verb)(command)


_terminal_status_command("enable", "enable", "Put a terminal (back) in service.")
_terminal_status_command("disable", "disable", "Refuse a terminal at the door until enabled.")
_terminal_status_command(
    "out-of-service", "put_out_of_service", "Stop customer business; it keeps reporting."
)
_terminal_status_command(
    "decommission", "decommission", "Retire a terminal for good (its keys end now)."
)


def _mount_fleet_commands() -> None:
    """The fleet's staff commands (alarms, commands, config, cash, availability) live
    beside the registry's under ``teleserve terminal``."""
    from teleserve.terminals import cli_fleet

    terminal_app.registered_commands.extend(cli_fleet.app.registered_commands)


_mount_fleet_commands()


def _mount_kiosk_command() -> None:
    """``teleserve kiosk``: the kiosk agent, a separate program in the same package."""
    from teleserve.kiosk import cli as kiosk_cli

    app.command("kiosk")(kiosk_cli.kiosk)


_mount_kiosk_command()


@terminal_app.command("list")
def terminal_list(
    site: Annotated[str | None, typer.Option(help="Only this site or hall (org code).")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The registered terminals, by id."""
    from teleserve.terminals import service as terminals

    found = in_unit_of_work(
        lambda uow: terminals.list_terminals(uow, site=site, status=status), as_json
    )
    if as_json:
        out({"ok": True, "terminals": [_terminal_json(t) for t in found]}, True)
        return
    table = Table(title=f"{len(found)} terminals")
    for column in ("id", "name", "status", "device mode", "key", "site path"):
        table.add_column(column)
    for t in found:
        table.add_row(
            t.terminal_id,
            t.name,
            t.status.value,
            t.device_mode.value,
            t.key_check_value or "-",
            t.org_path,
        )
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
