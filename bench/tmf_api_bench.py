"""TMF API throughput: the real server under load from another process, beside a
hello-world endpoint of the same app measured in the same run.

What it does, for one database (a fresh migrated SQLite file in a temporary directory, or
a scratch PostgreSQL database created beside ``--pg-url`` and dropped at the end):

  1. seeds the demo operator (``teleserve.demo.seed``, ``--customers`` customers) and
     registers an API client at the operator root with ``customers.read``; its bearer
     token is issued as ``POST /oauth/token`` would;
  2. starts the server as deployed — ``teleserve serve --role http`` on PostgreSQL,
     ``--role all`` on SQLite (which the CLI runs as one process: HTTP and the outbox
     worker together) — one uvicorn process on a free loopback port, in demo mode, and
     waits for ``/readyz``;
  3. drives it with ``wrk`` (Debian package ``wrk``; a C load generator in its own
     process) at ``--connections`` connections on ``--threads`` threads: a warm-up, then
     ``--seconds`` per endpoint, in this order:
       * ``GET /healthz`` — the same app's hello world: routing, middleware, JSON;
       * ``GET /tmf-api/customerManagement/v4/customer/{id}`` — one of up to 1,000
         real customer ids per request, chosen at random by wrk's Lua script;
       * ``GET /tmf-api/customerManagement/v4/customer?status=…&validFor.startDateTime.gte=…
         &limit=20`` — a filtered page with its total count (the status is the first
         listed customer's, so the filter matches real rows);
  4. prints requests/s, p50 / p99 latency, non-2xx answers (must be 0) and the server's
     CPU time per request (from /proc), and optionally writes a markdown table.

Without wrk the script stops and says how to install it: a Python load generator on a
2-core machine would measure itself as much as the server.

Usage::

    .venv/bin/python bench/tmf_api_bench.py [--db sqlite|postgresql] [--customers 10000]
        [--connections 16] [--threads 2] [--seconds 10]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from bench_common import pg_database
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from teleserve.core import migrate
from teleserve.core.db import make_engine
from teleserve.core.settings import Mode, Settings, use_settings
from teleserve.core.uow import UnitOfWork
from teleserve.demo.data import OPERATOR
from teleserve.demo.seed import seed_database
from teleserve.iam import service as iam

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CUSTOMER_API = "/tmf-api/customerManagement/v4/customer"
WARMUP_SECONDS = 2
MAX_IDS = 1_000

console = Console(width=None if sys.stdout.isatty() else 150)


@dataclass
class Result:
    name: str
    path: str
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    server_cpu_ms_per_request: float


# -- set-up ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(url: str, folder: Path, port: int) -> Settings:
    return Settings(
        mode=Mode.demo,
        database_url=url,
        http_port=port,
        audit_checkpoint_dir=folder / "checkpoints",
        audit_signing_key_file=folder / "audit.key",
    )


def _prepare(settings: Settings, customers: int) -> tuple[str, float]:
    """Migrate, seed, and issue a bearer token; (token, seed seconds)."""
    use_settings(settings)
    migrate.upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        started = time.perf_counter()
        seed_database(engine, customers=customers, progress=False)
        seeded = time.perf_counter() - started
        with UnitOfWork(engine) as uow:
            root = iam.get_org_unit_by_code(uow, OPERATOR[0])
            created = iam.create_api_client(uow, "tmf bench", root.id, ["customers.read"])
            uow.commit()
        with UnitOfWork(engine) as uow:
            token = iam.issue_token(uow, created.client.client_id, created.secret).access_token
            uow.commit()
    finally:
        engine.dispose()
    return token, seeded


@contextlib.contextmanager
def _server(settings: Settings, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``teleserve serve`` on loopback, stopped (SIGTERM, then SIGKILL) at exit."""
    teleserve = Path(sys.executable).with_name("teleserve")
    env = {
        **os.environ,
        "TELESERVE_MODE": "demo",
        "TELESERVE_DATABASE_URL": settings.database_url,
        "TELESERVE_AUDIT_CHECKPOINT_DIR": str(settings.audit_checkpoint_dir),
        "TELESERVE_AUDIT_SIGNING_KEY_FILE": str(settings.audit_signing_key_file),
        "TELESERVE_LOG_LEVEL": "WARNING",
    }
    # SQLite is served by one process (the CLI refuses a split); PostgreSQL by HTTP-only
    # processes beside separate workers, as in production.
    role = "all" if settings.database_url.startswith("sqlite") else "http"
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [str(teleserve), "serve", "--role", role, "--host", "127.0.0.1",
         "--port", str(settings.http_port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{settings.http_port}"
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit("the server exited:\n" + (folder / "server.log").read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready in 60 s")
            time.sleep(0.2)
        if role == "all":
            _wait_for_outbox_drained(settings.database_url)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_for_outbox_drained(url: str, limit_s: float = 300) -> None:
    """The seed leaves ~2.4 outbox events per customer; in ``--role all`` the server's own
    worker thread delivers them. Measuring while it does would charge that work (and its
    GIL time) to the HTTP requests, so wait until nothing is pending."""
    engine = make_engine(url)
    started = time.monotonic()
    try:
        while True:
            with engine.connect() as conn:
                pending = conn.scalar(
                    text("SELECT count(*) FROM outbox_message WHERE status = 'pending'")
                )
            if not pending:
                console.print(
                    f"outbox drained by the server's worker in {time.monotonic() - started:.1f} s"
                )
                return
            if time.monotonic() - started > limit_s:
                raise SystemExit(f"{pending} outbox messages still pending after {limit_s:.0f} s")
            time.sleep(1)
    finally:
        engine.dispose()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the load --------------------------------------------------------------------------


_LUA_PATHS = """
local paths = {%s}
math.randomseed(%d)
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""


def _wrk(
    url: str, token: str, args: argparse.Namespace, seconds: float, script: Path | None
) -> str:
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        "-H", f"Authorization: Bearer {token}", "-H", "Accept: application/json",
    ]  # fmt: skip
    if script is not None:
        command += ["-s", str(script)]
    done = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    return done.stdout


def _duration_ms(text: str) -> float:
    """wrk's ``812.00us`` / ``3.41ms`` / ``1.02s`` / ``1.50m`` in milliseconds."""
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if found is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[found[2]]


def _parse(output: str) -> dict[str, float]:
    def find(pattern: str) -> str | None:
        found = re.search(pattern, output, re.MULTILINE)
        return found.group(1) if found else None

    errors = find(r"Socket errors: (.*)$")
    return {
        "rps": float(find(r"Requests/sec:\s+([\d.]+)") or 0),
        "p50": _duration_ms(find(r"^\s+50%\s+(\S+)") or "0ms"),
        "p99": _duration_ms(find(r"^\s+99%\s+(\S+)") or "0ms"),
        "requests": float(find(r"(\d+) requests in") or 0),
        "non_2xx": float(find(r"Non-2xx or 3xx responses: (\d+)") or 0),
        "socket_errors": float(sum(int(n) for n in re.findall(r"\d+", errors or ""))),
    }


def _measure(
    name: str,
    path: str,
    base: str,
    token: str,
    args: argparse.Namespace,
    server_pid: int,
    folder: Path,
    paths: list[str] | None = None,
) -> Result:
    script = None
    if paths:
        script = folder / f"{name.replace(' ', '_')}.lua"
        quoted = ",".join(json.dumps(p) for p in paths)
        script.write_text(_LUA_PATHS % (quoted, args.seed))
    _wrk(base + path, token, args, WARMUP_SECONDS, script)
    cpu_before = _cpu_seconds(server_pid)
    parsed = _parse(_wrk(base + path, token, args, args.seconds, script))
    cpu = _cpu_seconds(server_pid) - cpu_before
    requests = int(parsed["requests"])
    return Result(
        name,
        path,
        parsed["rps"],
        parsed["p50"],
        parsed["p99"],
        requests,
        int(parsed["non_2xx"]),
        int(parsed["socket_errors"]),
        1000 * cpu / requests if requests else 0.0,
    )


def _customer_sample(base: str, token: str, rng: random.Random) -> tuple[list[str], str]:
    """Up to MAX_IDS real customer ids (shuffled) and the first customer's status."""
    headers = {"Authorization": f"Bearer {token}"}
    ids: list[str] = []
    status = ""
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        while len(ids) < MAX_IDS:
            page = client.get(CUSTOMER_API, params={"offset": len(ids), "limit": 100})
            page.raise_for_status()
            items = page.json()
            if not items:
                break
            status = status or str(items[0].get("status", ""))
            ids.extend(str(item["id"]) for item in items)
    if not ids:
        raise SystemExit(f"{CUSTOMER_API} listed no customers")
    rng.shuffle(ids)
    return ids, status


def run(args: argparse.Namespace, url: str, folder: Path) -> tuple[list[Result], dict[str, str]]:
    port = _free_port()
    settings = _settings(url, folder, port)
    token, seed_seconds = _prepare(settings, args.customers)
    base = f"http://127.0.0.1:{port}"
    with _server(settings, folder) as server:
        rng = random.Random(args.seed)
        ids, status = _customer_sample(base, token, rng)
        by_id = [f"{CUSTOMER_API}/{i}" for i in ids]
        filtered = (
            f"{CUSTOMER_API}?status={status}"
            "&validFor.startDateTime.gte=2000-01-01T00:00:00Z&limit=20"
        )
        check = httpx.get(base + filtered, headers={"Authorization": f"Bearer {token}"})
        check.raise_for_status()
        results = [
            _measure("hello world", "/healthz", base, token, args, server.pid, folder),
            _measure(
                "customer by id",
                f"{CUSTOMER_API}/{{id}}",
                base,
                token,
                args,
                server.pid,
                folder,
                paths=by_id,
            ),
            _measure("customer list, filtered", filtered, base, token, args, server.pid, folder),
        ]
    notes = {
        "customers seeded": f"{args.customers:,} in {seed_seconds:.1f} s",
        "ids sampled": f"{len(ids):,}",
        "filtered list total": check.headers.get("X-Total-Count", "?"),
    }
    return results, notes


# -- report ----------------------------------------------------------------------------


def _machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
        f"load average {load:.2f} at start"
    )


def report(args: argparse.Namespace, results: list[Result], notes: dict[str, str]) -> str:
    table = Table(
        title=f"TMF API on {args.db}: wrk -t{args.threads} -c{args.connections} "
        f"-d{args.seconds}s (after a {WARMUP_SECONDS}s warm-up)"
    )
    for column in ("endpoint", "requests/s", "p50 ms", "p99 ms", "requests", "non-2xx",
                   "server CPU ms/request"):  # fmt: skip
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    hello = results[0].requests_per_second or 1.0
    lines = [
        f"**{args.db}** — wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {_machine()}",
        "",
        "| endpoint | requests/s | vs hello world | p50 ms | p99 ms | non-2xx | "
        "server CPU ms/request |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        table.add_row(
            r.name,
            f"{r.requests_per_second:,.0f}",
            f"{r.p50_ms:.1f}",
            f"{r.p99_ms:.1f}",
            f"{r.requests:,}",
            str(r.non_2xx + r.socket_errors),
            f"{r.server_cpu_ms_per_request:.2f}",
        )
        lines.append(
            f"| {r.name} (`{r.path}`) | {r.requests_per_second:,.0f} | "
            f"{r.requests_per_second / hello:.0%} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.non_2xx + r.socket_errors} | {r.server_cpu_ms_per_request:.2f} |"
        )
    console.print(table)
    for key, value in notes.items():
        console.print(f"{key}: {value}")
    lines += ["", *(f"- {k}: {v}" for k, v in notes.items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        console.print("[red]wrk is not installed[/red]: apt-get install -y wrk")
        return 2
    with tempfile.TemporaryDirectory(prefix="tmf-bench-") as tmp:
        folder = Path(tmp)
        if args.db == "postgresql":
            with pg_database(args.pg_url, "teleserve_tmf_bench") as (url, _conninfo):
                results, notes = run(args, url, folder)
        else:
            results, notes = run(args, f"sqlite:///{folder / 'bench.db'}", folder)
    text = report(args, results, notes)
    if args.markdown:
        with args.markdown.open("a", encoding="utf-8") as out:
            out.write(text + "\n")
    failed = [r.name for r in results if r.non_2xx or r.socket_errors or not r.requests]
    if failed:
        console.print(f"[red]errors under load[/red]: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
