"""Fleet commands for staff: alarms, remote commands, configuration versions, cash
collections and finance exceptions, availability, journal reconciliations.

A typer app of its own (``app``), mounted under ``teleserve terminal`` by the main CLI.
Like the other commands: every one takes ``--json``, runs as the system in one committed
unit of work, and exits 1 with the error in the operator's language and nothing changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from teleserve.cli_support import JsonOption, console, fail, in_unit_of_work, out

app = typer.Typer(help="The kiosk fleet: alarms, commands, configuration, cash.")

TerminalOption = Annotated[str, typer.Option("--id", help="The terminal id (TSP/1 header).")]
MaybeTerminal = Annotated[str | None, typer.Option("--id", help="Only this terminal.")]
NoteOption = Annotated[str, typer.Option(help="A note kept with the change (audited).")]


def _dump(items: Sequence[BaseModel]) -> list[dict[str, Any]]:
    return [item.model_dump(mode="json") for item in items]


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(value) for value in row))
    console.print(table)


def _yuan(fen: int) -> str:
    return f"{fen / 100:.2f}"


# -- alarms ----------------------------------------------------------------------------


@app.command("alarms")
def alarms_list(
    terminal_id: MaybeTerminal = None,
    status: Annotated[
        list[str] | None,
        typer.Option(help="open, acknowledged or cleared; repeat for several (default: live)."),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 200,
    as_json: JsonOption = False,
) -> None:
    """Alarms, newest first (open and acknowledged unless --status says otherwise)."""
    from teleserve.terminals import alarms

    wanted = status or ["open", "acknowledged"]
    found = in_unit_of_work(
        lambda uow: alarms.list_alarms(uow, terminal_id=terminal_id, status=wanted, limit=limit),
        as_json,
    )
    if as_json:
        out({"ok": True, "alarms": _dump(found)}, True, "")
        return
    _table(
        f"{len(found)} alarms",
        ("id", "terminal", "severity", "code", "device", "status", "level", "count", "first seen"),
        [
            (
                a.alarm_id,
                a.terminal_id,
                a.severity,
                a.code,
                a.device,
                a.status,
                a.escalation_level,
                a.occurrences,
                a.first_seen_at.isoformat(timespec="seconds"),
            )
            for a in found
        ],
    )


@app.command("alarm-ack")
def alarm_ack(
    alarm_id: Annotated[str, typer.Option("--alarm", help="The alarm id.")],
    note: NoteOption = "",
    as_json: JsonOption = False,
) -> None:
    """Acknowledge an open alarm (it stops escalating)."""
    from teleserve.terminals import alarms

    alarm = in_unit_of_work(lambda uow: alarms.acknowledge_alarm(uow, alarm_id, note), as_json)
    out({"ok": True, "alarm": alarm.model_dump(mode="json")}, as_json, f"{alarm_id} acknowledged")


@app.command("alarm-clear")
def alarm_clear(
    alarm_id: Annotated[str, typer.Option("--alarm", help="The alarm id.")],
    note: NoteOption = "",
    as_json: JsonOption = False,
) -> None:
    """Clear an alarm (the next occurrence opens a new one)."""
    from teleserve.terminals import alarms

    alarm = in_unit_of_work(lambda uow: alarms.clear_alarm(uow, alarm_id, note), as_json)
    out({"ok": True, "alarm": alarm.model_dump(mode="json")}, as_json, f"{alarm_id} cleared")


# -- remote commands -------------------------------------------------------------------


@app.command("command")
def command_queue(
    terminal_id: TerminalOption,
    command_type: Annotated[
        str, typer.Option("--type", help="restart, out_of_service, in_service or reload_config.")
    ],
    as_json: JsonOption = False,
) -> None:
    """Queue a remote command (delivered with the terminal's next status report)."""
    from teleserve.terminals import fleet

    queued = in_unit_of_work(
        lambda uow: fleet.queue_command(uow, terminal_id, command_type), as_json
    )
    out(
        {"ok": True, "command": queued.model_dump(mode="json")},
        as_json,
        f"queued {queued.type} for {terminal_id}: {queued.command_id}",
    )


@app.command("command-cancel")
def command_cancel(
    command_id: Annotated[str, typer.Option("--command", help="The command id.")],
    reason: Annotated[str, typer.Option(help="Why (audited).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Withdraw a command the terminal has not acknowledged."""
    from teleserve.terminals import fleet

    cancelled = in_unit_of_work(lambda uow: fleet.cancel_command(uow, command_id, reason), as_json)
    out(
        {"ok": True, "command": cancelled.model_dump(mode="json")},
        as_json,
        f"{command_id} cancelled",
    )


@app.command("commands")
def commands_list(
    terminal_id: MaybeTerminal = None,
    active: Annotated[bool, typer.Option(help="Only those not acknowledged yet.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Remote commands, newest first."""
    from teleserve.terminals import fleet

    found = in_unit_of_work(
        lambda uow: fleet.list_commands(uow, terminal_id=terminal_id, active_only=active), as_json
    )
    if as_json:
        out({"ok": True, "commands": _dump(found)}, True, "")
        return
    _table(
        f"{len(found)} commands",
        ("id", "terminal", "type", "status", "deliveries", "created"),
        [
            (
                c.command_id,
                c.terminal_id,
                c.type,
                c.status,
                c.deliveries,
                c.created_at.isoformat(timespec="seconds"),
            )
            for c in found
        ],
    )


# -- configuration ---------------------------------------------------------------------


@app.command("config-publish")
def config_publish(
    scope: Annotated[str, typer.Option(help="all, site or terminal.")],
    config_file: Annotated[
        Path, typer.Option("--file", help="A JSON file holding the configuration object.")
    ],
    target: Annotated[
        str, typer.Option(help="The site's org code or the terminal id (not for all).")
    ] = "",
    note: NoteOption = "",
    as_json: JsonOption = False,
) -> None:
    """Publish a configuration version; terminals pull it with CONFIG_PULL."""
    from teleserve.terminals import fleet

    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read a JSON configuration from {config_file}: {exc}", as_json)
    published = in_unit_of_work(
        lambda uow: fleet.publish_config(uow, scope, config, target=target, note=note), as_json
    )
    out(
        {"ok": True, "config": published.model_dump(mode="json")},
        as_json,
        f"published configuration version {published.version} ({published.scope} {target})",
    )


@app.command("configs")
def configs_list(as_json: JsonOption = False) -> None:
    """Published configuration versions, newest first."""
    from teleserve.terminals import fleet

    found = in_unit_of_work(lambda uow: fleet.list_config_versions(uow), as_json)
    if as_json:
        out({"ok": True, "configs": _dump(found)}, True, "")
        return
    _table(
        f"{len(found)} configuration versions",
        ("version", "scope", "target", "keys", "by", "at"),
        [
            (
                v.version,
                v.scope,
                v.target or "-",
                ", ".join(sorted(v.config)),
                v.created_by,
                v.created_at.isoformat(timespec="seconds"),
            )
            for v in found
        ],
    )


# -- cash ------------------------------------------------------------------------------


@app.command("collections")
def collections_list(
    terminal_id: MaybeTerminal = None,
    since: Annotated[str | None, typer.Option(help="From this business date (YYYY-MM-DD).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Cash collections (清机), newest first."""
    from teleserve.terminals import cash

    first = _day(since, as_json) if since else None
    found = in_unit_of_work(
        lambda uow: cash.list_collections(uow, terminal_id=terminal_id, since=first), as_json
    )
    if as_json:
        out({"ok": True, "collections": _dump(found)}, True, "")
        return
    _table(
        f"{len(found)} collections",
        ("id", "terminal", "box", "expected", "counted", "discrepancy", "date"),
        [
            (
                c.collection_id,
                c.terminal_id,
                c.box_id,
                _yuan(c.expected_amount),
                _yuan(c.counted_amount),
                _yuan(c.discrepancy),
                c.business_date.isoformat(),
            )
            for c in found
        ],
    )


@app.command("exceptions")
def exceptions_list(
    terminal_id: MaybeTerminal = None,
    status: Annotated[str, typer.Option(help="open, resolved or all.")] = "open",
    as_json: JsonOption = False,
) -> None:
    """Finance exceptions of the cash boxes: surpluses, shortages, late deposits."""
    from teleserve.terminals import cash

    wanted = None if status == "all" else status
    found = in_unit_of_work(
        lambda uow: cash.list_exceptions(uow, terminal_id=terminal_id, status=wanted), as_json
    )
    if as_json:
        out({"ok": True, "exceptions": _dump(found)}, True, "")
        return
    _table(
        f"{len(found)} exceptions",
        ("id", "kind", "terminal", "box", "amount", "status", "at"),
        [
            (
                e.exception_id,
                e.kind,
                e.terminal_id,
                e.box_id,
                _yuan(e.amount),
                e.status,
                e.created_at.isoformat(timespec="seconds"),
            )
            for e in found
        ],
    )


@app.command("exception-resolve")
def exception_resolve(
    exception_id: Annotated[str, typer.Option("--exception", help="The exception id.")],
    note: Annotated[str, typer.Option(help="How it was resolved (required, audited).")],
    as_json: JsonOption = False,
) -> None:
    """Close a surplus or shortage with an explanation."""
    from teleserve.terminals import cash

    resolved = in_unit_of_work(lambda uow: cash.resolve_exception(uow, exception_id, note), as_json)
    out(
        {"ok": True, "exception": resolved.model_dump(mode="json")},
        as_json,
        f"{exception_id} resolved",
    )


# -- availability and journals ---------------------------------------------------------


def _day(value: str, as_json: bool) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"not a date (YYYY-MM-DD): {value}", as_json)


@app.command("availability")
def availability_day(
    day: Annotated[str, typer.Option(help="The business day (YYYY-MM-DD).")],
    terminal_id: MaybeTerminal = None,
    site: Annotated[str | None, typer.Option(help="Only this site or hall (org code).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Share of the day each terminal was in service and able to take money."""
    from teleserve.terminals import availability

    wanted = _day(day, as_json)
    found = in_unit_of_work(
        lambda uow: availability.availability(uow, wanted, terminal_id=terminal_id, site=site),
        as_json,
    )
    if as_json:
        out({"ok": True, "availability": _dump(found)}, True, "")
        return
    _table(
        f"availability on {wanted.isoformat()}",
        ("terminal", "available", "seen", "period", "share"),
        [(a.terminal_id, a.available_s, a.seen_s, a.period_s, f"{a.share:.2%}") for a in found],
    )


@app.command("reconciliations")
def reconciliations_list(
    terminal_id: MaybeTerminal = None,
    day: Annotated[str | None, typer.Option(help="Only this business date.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Journal uploads (9006) and what they found, newest first."""
    from teleserve.terminals import journal

    wanted = _day(day, as_json) if day else None
    found = in_unit_of_work(
        lambda uow: journal.list_reconciliations(
            uow, terminal_id=terminal_id, business_date=wanted
        ),
        as_json,
    )
    if as_json:
        out({"ok": True, "reconciliations": _dump(found)}, True, "")
        return
    _table(
        f"{len(found)} reconciliations",
        (
            "terminal",
            "date",
            "entries",
            "matched",
            "missing on server",
            "missing on terminal",
            "mismatched",
        ),
        [
            (
                r.terminal_id,
                r.business_date.isoformat(),
                r.entries,
                r.matched,
                len(r.missing_on_server),
                len(r.missing_on_terminal),
                len(r.mismatched),
            )
            for r in found
        ],
    )
