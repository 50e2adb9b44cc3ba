"""The kiosk fleet: status reports (9001), remote commands (9001 answers, 9005
acknowledgements) and configuration versions (9004).

Gateway-facing functions take the request's ``Connection`` and the terminal id (Core, no
actor); staff-facing ones take a ``UnitOfWork``, check ``terminals.read`` /
``terminals.write`` (``terminals.command`` for remote commands) and scope to the actor's
subtree like ``terminals.service``.

**Status reports** replace the terminal's ``DeviceState`` row, update its
``software_version``, raise the alarms the report shows (a device in ``fault`` or
``offline``, printer paper ``low`` / ``out``, the cash box nearly full or full) and clear
the live alarms of those codes whose condition the report shows over (also when the
terminal raised them itself with a 9002 of the same code and device, as the kiosk agent
does for ``device_fault`` / ``device_offline``), feed availability
(``availability.record_sample``), and answer the terminal's pending commands and its
configuration version.

**Commands** are delivered at least once: every STATUS_REPORT answer carries each command
not yet acknowledged (``pending`` → ``sent``), and the terminal de-duplicates by
``command_id``. The first COMMAND_ACK decides ``done`` / ``failed``; a later one changes
nothing. An acknowledgement naming a command the terminal does not have is
``UnknownCommand`` (TSP ``20008``). A command never changes the registry status by itself:
``out_of_service`` tells the kiosk to show its out-of-service screen; staff change what the
server refuses with ``terminals.service``.

**Configuration** versions are one operator-wide sequence; see ``ConfigVersion``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from teleserve.core.clock import utcnow
from teleserve.core.errors import Conflict, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.terminals import alarms, availability
from teleserve.terminals import service as terminal_service
from teleserve.terminals.deposits import canonical_notes
from teleserve.terminals.fleet_base import (
    Effect,
    TerminalInfo,
    canonical,
    effects,
    note_text,
    terminal_actor,
    terminal_info,
    uow_effects,
    visible_terminal,
)
from teleserve.terminals.fleet_models import (
    AlarmSource,
    CommandStatus,
    CommandType,
    ConfigScope,
    Severity,
    command_table,
    config_table,
    device_state_table,
)
from teleserve.terminals.fleet_schemas import (
    BoxInPlaceOut,
    CommandOut,
    ConfigVersionOut,
    DeviceStateOut,
    EffectiveConfig,
    Note,
)
from teleserve.terminals.models import terminal_table
from teleserve.terminals.schemas import TerminalOut

__all__ = [
    "COMMAND_ACKNOWLEDGED_TOPIC",
    "COMMAND_QUEUED_TOPIC",
    "CONFIG_PUBLISHED_TOPIC",
    "REPORT_ALARM_CODES",
    "FleetTile",
    "StatusAnswer",
    "TileState",
    "UnknownCommand",
    "acknowledge_command",
    "boxes_in_place",
    "cancel_command",
    "config_for",
    "device_state",
    "device_states",
    "fleet_tiles",
    "list_commands",
    "list_config_versions",
    "publish_config",
    "queue_command",
    "record_status_report",
    "tile_state",
]

COMMAND_QUEUED_TOPIC = "terminals.command_queued"
COMMAND_ACKNOWLEDGED_TOPIC = "terminals.command_acknowledged"
CONFIG_PUBLISHED_TOPIC = "terminals.config_published"

# The device whose state decides whether a terminal can take cash (XFS4IoT's
# CashAcceptor service); a report without it cannot take cash.
CASH_ACCEPTOR = "cash_acceptor"
# A box at or past this share of its capacity raises cash_box_nearly_full.
BOX_NEARLY_FULL = 0.9
CONFIG_MAX_BYTES = 64 * 1024

# The alarms a STATUS_REPORT raises: (code, severity); the device is the reported one,
# "printer" for paper and "cash_box" for the box.
_REPORT_ALARMS: dict[str, Severity] = {
    "device_fault": Severity.major,
    "device_offline": Severity.major,
    "paper_out": Severity.major,
    "paper_low": Severity.warning,
    "cash_box_full": Severity.major,
    "cash_box_nearly_full": Severity.minor,
}
REPORT_ALARM_CODES = frozenset(_REPORT_ALARMS)
_DEVICE_CODES = ("device_fault", "device_offline")
_ACTIVE_COMMANDS = (CommandStatus.pending.value, CommandStatus.sent.value)
_LIST_MAX = 1000


class UnknownCommand(NotFound):
    """COMMAND_ACK named a command this terminal was never sent."""

    default_code = "command_not_found"


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    commands: list[dict[str, str]]  # [{"command_id", "type"}]
    config_version: int


# -- status reports --------------------------------------------------------------------


def _upsert(conn: Connection, row: dict[str, Any]) -> None:
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(device_state_table).values(row)
    changes = {k: statement.excluded[k] for k in row if k != "terminal_id"}
    conn.execute(statement.on_conflict_do_update(index_elements=["terminal_id"], set_=changes))


def able_to_take_money(
    status_in_service: bool, devices: Mapping[str, Mapping[str, Any]], count: int, capacity: int
) -> bool:
    """In service, the cash acceptor reported and neither in fault nor offline, and the
    box not full (a full box makes the acceptor refuse notes)."""
    acceptor = devices.get(CASH_ACCEPTOR)
    acceptor_ok = acceptor is not None and acceptor.get("state") in ("ok", "warning")
    box_ok = capacity <= 0 or count < capacity
    return status_in_service and acceptor_ok and box_ok


def _conditions(report: Mapping[str, Any], count: int, capacity: int) -> list[tuple[str, str]]:
    """(device, code) of every alarm condition the report shows."""
    found: list[tuple[str, str]] = []
    for name, device in sorted(report["devices"].items()):
        if device["state"] == "fault":
            found.append((name, "device_fault"))
        elif device["state"] == "offline":
            found.append((name, "device_offline"))
    paper = report["printer_paper"]
    if paper in ("out", "low"):
        found.append(("printer", f"paper_{paper}"))
    if capacity > 0 and count >= capacity:
        found.append(("cash_box", "cash_box_full"))
    elif capacity > 0 and count >= BOX_NEARLY_FULL * capacity:
        found.append(("cash_box", "cash_box_nearly_full"))
    return found


def _covered(report: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Every (device, code) the report speaks about: each listed device's fault and
    offline alarms, the paper's and the box's (an alarm of a device the report does not
    list stays as it is)."""
    covered = {(name, code) for name in report["devices"] for code in _DEVICE_CODES}
    covered |= {("printer", "paper_out"), ("printer", "paper_low")}
    covered |= {("cash_box", "cash_box_full"), ("cash_box", "cash_box_nearly_full")}
    return covered


def _message(code: str, device: str, report: Mapping[str, Any]) -> str:
    detail = ""
    if code.startswith("device_"):
        detail = str(report["devices"][device].get("detail") or "")
    return f"{code} ({device}){': ' + detail if detail else ''}"[:1000]


def record_status_report(
    conn: Connection, terminal_id: str, report: Mapping[str, Any]
) -> StatusAnswer:
    """STATUS_REPORT (9001), as ``gateway.fields`` validated it."""
    info = terminal_info(conn, terminal_id)
    if info is None:
        raise NotFound(_("No such terminal"))
    now = utcnow()
    box = report["cash_box"]
    notes = [n for n in canonical_notes(box["notes"]) if n["count"] > 0]
    count = sum(n["count"] for n in notes)
    capacity = int(box["capacity_notes"])
    able = able_to_take_money(info.status.value == "in_service", report["devices"], count, capacity)
    _upsert(
        conn,
        {
            "terminal_id": terminal_id,
            "reported_at": now,
            "software_version": report["software_version"],
            "uptime_s": int(report["uptime_s"]),
            "device_mode": report["device_mode"],
            "devices": canonical(report["devices"]),
            "cash_box_id": box["box_id"],
            "cash_box_notes": canonical(notes),
            "cash_box_count": count,
            "cash_box_capacity": capacity,
            "printer_paper": report["printer_paper"],
            "able": able,
        },
    )
    _set_software_version(conn, terminal_id, report["software_version"], now)
    conditions = _conditions(report, count, capacity)
    for device, code in conditions:
        alarms.raise_alarm(
            conn,
            terminal_id,
            code,
            _REPORT_ALARMS[code].value,
            device,
            _message(code, device, report),
            now,
            source=AlarmSource.report,
        )
    alarms.clear_report_alarms(
        conn, terminal_id, _covered(report), set(conditions), terminal_actor(info)
    )
    availability.record_sample(conn, terminal_id, able, now)
    return StatusAnswer(_deliver_commands(conn, terminal_id, now), config_for(conn, info).version)


def _set_software_version(conn: Connection, terminal_id: str, version: str, now: datetime) -> None:
    """The terminal row keeps the version the terminal last reported (SIGN_ON or 9001)."""
    t = terminal_table
    conn.execute(
        update(t)
        .where(t.c.terminal_id == terminal_id, t.c.software_version != version)
        .values(software_version=version, updated_at=now)
    )


def _state_out(row: RowMapping, now: datetime) -> DeviceStateOut:
    grace = 3 * get_settings().gateway_keepalive_s
    return DeviceStateOut(
        terminal_id=row["terminal_id"],
        reported_at=row["reported_at"],
        software_version=row["software_version"],
        uptime_s=row["uptime_s"],
        device_mode=row["device_mode"],
        devices=json.loads(row["devices"]),
        cash_box_id=row["cash_box_id"],
        cash_box_notes=[Note(**n) for n in json.loads(row["cash_box_notes"])],
        cash_box_count=row["cash_box_count"],
        cash_box_capacity=row["cash_box_capacity"],
        printer_paper=row["printer_paper"],
        able=row["able"],
        online=(now - row["reported_at"]).total_seconds() <= grace,
    )


def device_state(uow: UnitOfWork, terminal_id: str) -> DeviceStateOut | None:
    """What the terminal last reported (None: it never has)."""
    uow.actor.require("terminals.read")
    visible_terminal(uow, terminal_id)
    s = device_state_table
    row = uow.connection.execute(select(s).where(s.c.terminal_id == terminal_id)).mappings().first()
    return None if row is None else _state_out(row, utcnow())


# -- commands --------------------------------------------------------------------------


def _deliver_commands(conn: Connection, terminal_id: str, now: datetime) -> list[dict[str, str]]:
    c = command_table
    rows = conn.execute(
        select(c.c.id, c.c.type, c.c.status)
        .where(c.c.terminal_id == terminal_id, c.c.status.in_(_ACTIVE_COMMANDS))
        .order_by(c.c.created_at, c.c.id)
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    conn.execute(
        update(c)
        .where(c.c.id.in_(ids))
        .values(
            status=CommandStatus.sent.value,
            deliveries=c.c.deliveries + 1,
            sent_at=func.coalesce(c.c.sent_at, now),
        )
    )
    return [{"command_id": row.id, "type": row.type} for row in rows]


def acknowledge_command(
    conn: Connection, terminal_id: str, command_id: str, result: str, detail: str = ""
) -> None:
    """COMMAND_ACK (9005). ``UnknownCommand`` when the terminal has no such command. The
    first acknowledgement decides; a later one (a new serial) changes nothing. An
    acknowledgement of a command staff cancelled still records what the kiosk did."""
    final = CommandStatus.done if result == "done" else CommandStatus.failed
    c = command_table
    row = conn.execute(
        select(c.c.id, c.c.status, c.c.type).where(
            c.c.id == command_id, c.c.terminal_id == terminal_id
        )
    ).first()
    if row is None:
        raise UnknownCommand(_("No such command"))
    if row.status in (CommandStatus.done.value, CommandStatus.failed.value):
        return
    now = utcnow()
    conn.execute(
        update(c)
        .where(c.c.id == command_id)
        .values(status=final.value, finished_at=now, detail=(detail or "")[:1000])
    )
    info = terminal_info(conn, terminal_id)
    assert info is not None
    effects(
        conn,
        terminal_actor(info),
        [
            Effect(
                "terminals.command_acknowledged",
                "terminal_command",
                command_id,
                {
                    "terminal_id": terminal_id,
                    "type": row.type,
                    "result": final.value,
                    "detail": detail or "",
                },
                COMMAND_ACKNOWLEDGED_TOPIC,
                {
                    "command_id": command_id,
                    "terminal_id": terminal_id,
                    "type": row.type,
                    "status": final.value,
                    "org_path": info.org_path,
                },
                terminal_id,
            )
        ],
    )


def _command_out(row: Mapping[Any, Any]) -> CommandOut:
    return CommandOut(
        command_id=row["id"],
        terminal_id=row["terminal_id"],
        type=row["type"],
        status=row["status"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        sent_at=row["sent_at"],
        deliveries=row["deliveries"],
        finished_at=row["finished_at"],
        detail=row["detail"],
    )


def _command_type(value: str) -> CommandType:
    try:
        return CommandType(value)
    except ValueError:
        raise ValidationError(
            _("Unknown command type {type}: restart, out_of_service, in_service or reload_config"),
            code="invalid_command_type",
            type=str(value),
        ) from None


def queue_command(uow: UnitOfWork, terminal_id: str, command_type: str) -> CommandOut:
    """Queue a remote command; the terminal gets it with its next STATUS_REPORT answer.
    A decommissioned terminal never reports again: refused."""
    uow.actor.require("terminals.command")
    kind = _command_type(command_type)
    info = visible_terminal(uow, terminal_id)
    if info.status.value == "decommissioned":
        raise Conflict(
            _("The terminal {terminal_id} is decommissioned: it takes no commands"),
            code="terminal_status_conflict",
            terminal_id=terminal_id,
        )
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "terminal_id": terminal_id,
        "org_path": info.org_path,
        "type": kind.value,
        "status": CommandStatus.pending.value,
        "created_at": now,
        "created_by": uow.actor.id,
        "sent_at": None,
        "deliveries": 0,
        "finished_at": None,
        "detail": "",
    }
    uow.connection.execute(command_table.insert().values(row))
    uow_effects(
        uow,
        [
            Effect(
                "terminals.command_queued",
                "terminal_command",
                row["id"],
                {"terminal_id": terminal_id, "type": kind.value},
                COMMAND_QUEUED_TOPIC,
                {
                    "command_id": row["id"],
                    "terminal_id": terminal_id,
                    "type": kind.value,
                    "org_path": info.org_path,
                },
                terminal_id,
            )
        ],
    )
    return _command_out(row)


def cancel_command(uow: UnitOfWork, command_id: str, reason: str = "") -> CommandOut:
    """Withdraw a command not yet acknowledged (it is no longer delivered)."""
    uow.actor.require("terminals.command")
    why = note_text(reason, "reason")
    c = command_table
    row = (
        uow.connection.execute(select(c).where(c.c.id == command_id)).mappings().first()
        if isinstance(command_id, str)
        else None
    )
    if row is None or not uow.actor.sees(row["org_path"]):
        raise NotFound(_("No such command"), code="command_not_found")
    if row["status"] not in _ACTIVE_COMMANDS:
        raise Conflict(
            _("A command that is {status} cannot be cancelled"),
            code="command_status_conflict",
            status=row["status"],
        )
    now = utcnow()
    uow.connection.execute(
        update(c)
        .where(c.c.id == command_id)
        .values(status=CommandStatus.cancelled.value, finished_at=now, detail=why)
    )
    uow_effects(
        uow,
        [
            Effect(
                "terminals.command_cancelled",
                "terminal_command",
                command_id,
                {"terminal_id": row["terminal_id"], "type": row["type"], "reason": why},
            )
        ],
    )
    changed = uow.connection.execute(select(c).where(c.c.id == command_id)).mappings().one()
    return _command_out(changed)


def list_commands(
    uow: UnitOfWork, *, terminal_id: str | None = None, active_only: bool = False, limit: int = 200
) -> list[CommandOut]:
    uow.actor.require("terminals.read")
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )
    c = command_table
    query = select(c).where(uow.actor.scope(c.c.org_path))
    if terminal_id is not None:
        query = query.where(c.c.terminal_id == terminal_id)
    if active_only:
        query = query.where(c.c.status.in_(_ACTIVE_COMMANDS))
    query = query.order_by(c.c.created_at.desc(), c.c.id.desc()).limit(limit)
    return [_command_out(row) for row in uow.connection.execute(query).mappings()]


# -- configuration ---------------------------------------------------------------------


def _latest(conn: Connection, scope: ConfigScope, target: str) -> RowMapping | None:
    v = config_table
    return (
        conn.execute(
            select(v.c.version, v.c.config)
            .where(v.c.scope == scope.value, v.c.target == target)
            .order_by(v.c.version.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )


def config_for(conn: Connection, info: TerminalInfo) -> EffectiveConfig:
    """The terminal's effective configuration (see ``EffectiveConfig``)."""
    merged: dict[str, Any] = {}
    version = 0
    for scope, target in (
        (ConfigScope.all, ""),
        (ConfigScope.site, info.site_id),
        (ConfigScope.terminal, info.terminal_id),
    ):
        row = _latest(conn, scope, target)
        if row is not None:
            merged.update(json.loads(row["config"]))
            version = max(version, int(row["version"]))
    return EffectiveConfig(terminal_id=info.terminal_id, version=version, config=merged)


def config_pull(conn: Connection, terminal_id: str, held_version: int) -> EffectiveConfig:
    """CONFIG_PULL (9004): the effective configuration when its version differs from the
    one the terminal holds (newer, or older after a server restore: the server is the
    reference), else the same version with an empty ``config``. The terminal row keeps
    the version the server holds for it."""
    info = terminal_info(conn, terminal_id)
    if info is None:
        raise NotFound(_("No such terminal"))
    effective = config_for(conn, info)
    t = terminal_table
    conn.execute(
        update(t)
        .where(t.c.terminal_id == terminal_id, t.c.config_version != effective.version)
        .values(config_version=effective.version)
    )
    if effective.version == held_version:
        return EffectiveConfig(terminal_id=terminal_id, version=held_version, config={})
    return effective


def _config_object(config: Any) -> str:
    """The configuration as canonical JSON text: an object of plain JSON values (no NaN
    or Infinity, which a terminal's parser refuses), at most CONFIG_MAX_BYTES."""
    invalid = ValidationError(_("A configuration is a JSON object"), code="invalid_config")
    if not isinstance(config, Mapping):
        raise invalid
    try:
        json.dumps(config, allow_nan=False)
        text = canonical(dict(config))
    except (TypeError, ValueError, RecursionError):
        raise invalid from None
    if len(text.encode("utf-8")) > CONFIG_MAX_BYTES:
        raise ValidationError(
            _("A configuration is at most {max} bytes"), code="invalid_config", max=CONFIG_MAX_BYTES
        )
    return text


def publish_config(
    uow: UnitOfWork,
    scope: str,
    config: Mapping[str, Any],
    *,
    target: str = "",
    note: str = "",
) -> ConfigVersionOut:
    """Publish a configuration for every terminal (``all``), one site (``site``, by org
    unit code) or one terminal (``terminal``, by terminal id). It gets the next version
    of the operator-wide sequence; terminals pick it up with CONFIG_PULL (their STATUS_REPORT
    answer shows the new version). Staff publish ``all`` only from the root organisation."""
    uow.actor.require("terminals.write")
    try:
        kind = ConfigScope(scope)
    except ValueError:
        raise ValidationError(
            _("Unknown configuration scope {scope}: all, site or terminal"),
            code="invalid_config_scope",
            scope=str(scope),
        ) from None
    text = _config_object(config)
    why = note_text(note)
    if kind is ConfigScope.all:
        if uow.actor.org_path != "/":
            raise Conflict(
                _("Only operator-wide staff publish a configuration for all terminals"),
                code="operator_wide",
            )
        target_id, org_path = "", "/"
    elif kind is ConfigScope.site:
        site = iam.get_org_unit_by_code(uow, target)
        target_id, org_path = site.id, site.path
    else:
        info = visible_terminal(uow, target)
        target_id, org_path = info.terminal_id, info.org_path
    conn = uow.connection
    version = int(conn.scalar(select(func.coalesce(func.max(config_table.c.version), 0))) or 0) + 1
    row: dict[str, Any] = {
        "version": version,
        "scope": kind.value,
        "target": target_id,
        "org_path": org_path,
        "config": text,
        "note": why,
        "created_at": utcnow(),
        "created_by": uow.actor.id,
    }
    try:
        with uow.savepoint():
            conn.execute(config_table.insert().values(row))
    except IntegrityError:
        raise Conflict(
            _("Another configuration was published at the same moment: try again"),
            code="config_version_taken",
        ) from None
    uow_effects(
        uow,
        [
            Effect(
                "terminals.config_published",
                "terminal_config",
                str(version),
                {"version": version, "scope": kind.value, "target": target or ""},
                CONFIG_PUBLISHED_TOPIC,
                {
                    "version": version,
                    "scope": kind.value,
                    "target": target_id,
                    "org_path": org_path,
                },
                str(version),
            )
        ],
    )
    return _config_out(row)


def _config_out(row: Mapping[Any, Any]) -> ConfigVersionOut:
    return ConfigVersionOut(
        version=row["version"],
        scope=row["scope"],
        target=row["target"],
        config=json.loads(row["config"]),
        note=row["note"],
        created_at=row["created_at"],
        created_by=row["created_by"],
    )


def list_config_versions(uow: UnitOfWork, *, limit: int = 100) -> list[ConfigVersionOut]:
    """Published configurations the actor may see (its subtree's, and the ``all`` ones
    every terminal receives), newest first."""
    uow.actor.require("terminals.read")
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )
    v = config_table
    query = (
        select(v)
        .where(or_(uow.actor.scope(v.c.org_path), v.c.scope == ConfigScope.all.value))
        .order_by(v.c.version.desc())
        .limit(limit)
    )
    return [_config_out(row) for row in uow.connection.execute(query).mappings()]


def terminal_config(uow: UnitOfWork, terminal_id: str) -> EffectiveConfig:
    uow.actor.require("terminals.read")
    return config_for(uow.connection, visible_terminal(uow, terminal_id))


# -- the fleet at a glance (console) ---------------------------------------------------


class TileState(StrEnum):
    """What a fleet tile shows, most urgent first once a terminal is in service."""

    ok = "ok"  # in service, reporting, able to take money, nothing live
    warning = "warning"  # a minor / warning alarm or device state, paper low, box filling
    fault = "fault"  # a critical / major alarm, a device in fault or offline, unable
    not_reporting = "not_reporting"  # in service but silent past the idle limit
    out_of_service = "out_of_service"
    disabled = "disabled"


_BAD_DEVICE = ("fault", "offline")
_SERIOUS = frozenset({Severity.critical.value, Severity.major.value})


@dataclass(frozen=True, slots=True)
class FleetTile:
    terminal: TerminalOut
    state: TileState
    device_state: DeviceStateOut | None
    live_alarms: int
    worst_severity: str | None


def device_states(uow: UnitOfWork, terminal_ids: Sequence[str]) -> dict[str, DeviceStateOut]:
    """The last report of each of ``terminal_ids`` the actor sees (absent: it never
    reported, or is out of the actor's subtree), in one query per 500 ids."""
    uow.actor.require("terminals.read")
    s, t = device_state_table, terminal_table
    now = utcnow()
    found: dict[str, DeviceStateOut] = {}
    for start in range(0, len(terminal_ids), 500):
        part = list(terminal_ids[start : start + 500])
        rows = uow.connection.execute(
            select(s)
            .select_from(s.join(t, t.c.terminal_id == s.c.terminal_id))
            .where(s.c.terminal_id.in_(part), uow.actor.scope(t.c.org_path))
        ).mappings()
        for row in rows:
            found[row["terminal_id"]] = _state_out(row, now)
    return found


def tile_state(
    terminal: TerminalOut, state: DeviceStateOut | None, worst_severity: str | None
) -> TileState:
    """The registry status decides first (disabled, out of service); then silence (no
    report within the idle limit: the device state is stale); then faults — a critical
    or major live alarm, a device in fault or offline, or a report unable to take
    money; then anything to watch."""
    status = terminal.status.value
    if status in ("disabled", "decommissioned"):
        return TileState.disabled
    if status == "out_of_service":
        return TileState.out_of_service
    if state is None or not state.online:
        return TileState.not_reporting
    devices = [d.get("state", "") for d in state.devices.values()]
    if worst_severity in _SERIOUS or any(d in _BAD_DEVICE for d in devices) or not state.able:
        return TileState.fault
    box_filling = (
        state.cash_box_capacity > 0
        and state.cash_box_count >= BOX_NEARLY_FULL * state.cash_box_capacity
    )
    if (
        worst_severity is not None
        or "warning" in devices
        or state.printer_paper != "ok"
        or box_filling
    ):
        return TileState.warning
    return TileState.ok


def fleet_tiles(uow: UnitOfWork, *, site: str | None = None) -> list[FleetTile]:
    """Every terminal the actor sees that is not decommissioned (``site``: one org unit's,
    by code), by terminal id, with its tile state, last report and live alarms."""
    uow.actor.require("terminals.read")
    terminals = [
        t
        for t in terminal_service.list_terminals(uow, site=site)
        if t.status.value != "decommissioned"
    ]
    ids = [t.terminal_id for t in terminals]
    states = device_states(uow, ids)
    tally = alarms.live_alarm_tally(uow, ids)
    tiles = []
    for terminal in terminals:
        count, worst = tally.get(terminal.terminal_id, (0, None))
        state = states.get(terminal.terminal_id)
        tiles.append(FleetTile(terminal, tile_state(terminal, state, worst), state, count, worst))
    return tiles


def boxes_in_place(uow: UnitOfWork, *, terminal_id: str | None = None) -> list[BoxInPlaceOut]:
    """The cash box in each terminal the actor sees (not decommissioned; one terminal
    with ``terminal_id``), as last reported, fullest first: the boxes to collect first
    lead the list. Terminals that never reported a box are left out."""
    terminals = {
        t.terminal_id: t
        for t in terminal_service.list_terminals(uow)
        if t.status.value != "decommissioned" and terminal_id in (None, t.terminal_id)
    }
    boxes = []
    for state in device_states(uow, list(terminals)).values():
        if not state.cash_box_id:
            continue
        capacity = state.cash_box_capacity
        fill = state.cash_box_count / capacity if capacity > 0 else None
        boxes.append(
            BoxInPlaceOut(
                terminal_id=state.terminal_id,
                org_path=terminals[state.terminal_id].org_path,
                box_id=state.cash_box_id,
                count=state.cash_box_count,
                capacity=capacity,
                amount=sum(n.value * n.count for n in state.cash_box_notes),
                reported_at=state.reported_at,
                online=state.online,
                fill=fill,
                nearly_full=fill is not None and fill >= BOX_NEARLY_FULL,
            )
        )
    boxes.sort(key=lambda b: (-(b.fill or 0.0), b.terminal_id))
    return boxes
