"""Terminal alarms: raised by a terminal (9002 ALARM), derived from a STATUS_REPORT
(device fault, paper out, cash box nearly full), or raised by the server itself
(``raise_alarm``: MAC-failure floods, a terminal whose counter is behind); acknowledged
and cleared by staff; escalated by a timer while nobody acknowledges them.

**One live alarm per (terminal, device, code).** A raise that finds an alarm of the same
code on the same device not yet cleared (open *or* acknowledged) is the same alarm: its
``occurrences`` and ``last_raised_at`` move, its severity becomes the higher of the two,
and the same ``alarm_id`` is answered. A flapping device so shows as one alarm with a
count instead of a flood, and staff who acknowledged it are not asked again. Once
cleared, the next raise opens a new alarm. The unique ``open_key`` holds this under
concurrent raises on both databases.

Audit records: every new alarm, a repeat that raised the severity, acknowledgement,
clearing, escalation. A plain repeat only counts (a persistent fault reported every
30 seconds would otherwise flood the log). Each of those also goes out as an event.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, func, select, update

from teleserve.core.actor import Actor
from teleserve.core.clock import utcnow
from teleserve.core.db import insert_or_nothing
from teleserve.core.errors import Conflict, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.terminals.fleet_base import (
    Effect,
    effects,
    note_text,
    terminal_actor,
    terminal_info,
    uow_effects,
)
from teleserve.terminals.fleet_models import (
    SEVERITY_RANK,
    AlarmSource,
    AlarmStatus,
    Severity,
    alarm_table,
)
from teleserve.terminals.fleet_schemas import AlarmOut

__all__ = [
    "ALARM_ACKNOWLEDGED_TOPIC",
    "ALARM_CLEARED_TOPIC",
    "ALARM_ESCALATED_TOPIC",
    "ALARM_RAISED_TOPIC",
    "MAX_ESCALATION_LEVEL",
    "RaisedAlarm",
    "acknowledge_alarm",
    "clear_alarm",
    "clear_report_alarms",
    "escalate_alarms",
    "get_alarm",
    "list_alarms",
    "live_alarm_tally",
    "raise_alarm",
]

ALARM_RAISED_TOPIC = "terminals.alarm_raised"
ALARM_ACKNOWLEDGED_TOPIC = "terminals.alarm_acknowledged"
ALARM_CLEARED_TOPIC = "terminals.alarm_cleared"
ALARM_ESCALATED_TOPIC = "terminals.alarm_escalated"

# An open alarm escalates one level each time this long passes without an
# acknowledgement (``settings.terminal_alarm_escalation_minutes``), up to
# MAX_ESCALATION_LEVEL: past that, more noise helps nobody.
MAX_ESCALATION_LEVEL = 3
_TEXT_MAX, _MESSAGE_MAX, _LIST_MAX = 64, 1000, 1000


@dataclass(frozen=True, slots=True)
class RaisedAlarm:
    alarm_id: str
    created: bool  # False: an alarm already live for this code and device


def escalation_minutes() -> float:
    return get_settings().terminal_alarm_escalation_minutes


def _severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        raise ValidationError(
            _("Unknown alarm severity {severity}"), code="invalid_severity", severity=str(value)
        ) from None


def _label(value: str, field: str, maximum: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > maximum:
        raise ValidationError(
            _("{field} must be {min} to {max} characters"), field=field, min=1, max=maximum
        )
    return value


def _open_key(terminal_id: str, device: str, code: str) -> str:
    return f"{terminal_id}|{device}|{code}"


def _payload(row: RowMapping | dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "alarm_id": row["id"],
        "terminal_id": row["terminal_id"],
        "org_path": row["org_path"],
        "code": row["code"],
        "device": row["device"],
        "severity": row["severity"],
        "status": row["status"],
        **extra,
    }


def raise_alarm(
    conn: Connection,
    terminal_id: str,
    code: str,
    severity: str,
    device: str,
    message: str,
    raised_at: datetime,
    *,
    source: AlarmSource = AlarmSource.server,
) -> RaisedAlarm:
    """Raise (or repeat) an alarm of ``terminal_id`` in the caller's transaction (Core, no
    actor: the gateway's own alarms come from the system, a terminal's from the terminal).

    An unknown terminal id is kept as given, visible operator-wide only."""
    level = _severity(severity)
    _label(terminal_id, "terminal_id", 16)
    _label(code, "alarm_code", _TEXT_MAX)
    _label(device, "device", _TEXT_MAX)
    text = _label(message, "message", _MESSAGE_MAX)
    info = terminal_info(conn, terminal_id)
    org_path = info.org_path if info is not None else "/"
    actor: Actor | None = None
    if info is not None and source is not AlarmSource.server:
        actor = terminal_actor(info)
    now = utcnow()
    key = _open_key(terminal_id, device, code)
    row: dict[str, Any] = {
        "id": new_id(),
        "terminal_id": terminal_id,
        "org_path": org_path,
        "code": code,
        "device": device,
        "severity": level.value,
        "message": text,
        "source": source.value,
        "status": AlarmStatus.open.value,
        "open_key": key,
        "raised_at": raised_at,
        "first_seen_at": now,
        "last_raised_at": now,
        "occurrences": 1,
        "escalation_level": 0,
        "escalated_at": None,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "cleared_at": None,
        "cleared_by": None,
        "note": "",
    }
    inserted = conn.execute(
        insert_or_nothing(conn, alarm_table, index_elements=["open_key"])
        .values(row)
        .returning(alarm_table.c.id)
    ).scalar()
    if inserted is not None:
        effects(
            conn,
            actor,
            [
                Effect(
                    "terminals.alarm_raised",
                    "terminal_alarm",
                    row["id"],
                    {
                        "terminal_id": terminal_id,
                        "code": code,
                        "device": device,
                        "severity": level.value,
                        "source": source.value,
                    },
                    ALARM_RAISED_TOPIC,
                    _payload(row, message=text, source=source.value),
                    terminal_id,
                )
            ],
        )
        return RaisedAlarm(row["id"], True)
    return _repeat(conn, key, level, text, actor)


def _repeat(
    conn: Connection, key: str, level: Severity, message: str, actor: Actor | None
) -> RaisedAlarm:
    query = select(alarm_table).where(alarm_table.c.open_key == key)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    current = conn.execute(query).mappings().one()
    higher = SEVERITY_RANK[level] > SEVERITY_RANK[Severity(current["severity"])]
    values: dict[str, Any] = {
        "occurrences": alarm_table.c.occurrences + 1,
        "last_raised_at": utcnow(),
    }
    if higher:
        values.update(severity=level.value, message=message)
    conn.execute(update(alarm_table).where(alarm_table.c.id == current["id"]).values(values))
    if higher:
        effects(
            conn,
            actor,
            [
                Effect(
                    "terminals.alarm_raised",
                    "terminal_alarm",
                    current["id"],
                    {
                        "terminal_id": current["terminal_id"],
                        "code": current["code"],
                        "device": current["device"],
                        "severity": level.value,
                        "previous_severity": current["severity"],
                        "repeated": True,
                    },
                    ALARM_RAISED_TOPIC,
                    _payload(current, severity=level.value, message=message, repeated=True),
                    current["terminal_id"],
                )
            ],
        )
    return RaisedAlarm(current["id"], False)


def clear_report_alarms(
    conn: Connection,
    terminal_id: str,
    covered: Collection[tuple[str, str]],
    still: Collection[tuple[str, str]],
    actor: Actor | None,
) -> list[str]:
    """Clear the live alarms of ``terminal_id`` whose (device, code) a STATUS_REPORT
    speaks about (``covered``) but no longer shows (not in ``still``): the condition is
    over. Whoever raised them — the report, or the terminal with a 9002 of the same code
    for the same device — the report is the newer word on that device. Returns the ids."""
    a = alarm_table
    codes = sorted({code for _device, code in covered})
    rows = (
        conn.execute(
            select(a).where(
                a.c.terminal_id == terminal_id,
                a.c.open_key.is_not(None),
                a.c.code.in_(codes),
            )
        )
        .mappings()
        .all()
    )
    gone = [
        row
        for row in rows
        if (row["device"], row["code"]) in covered and (row["device"], row["code"]) not in still
    ]
    if not gone:
        return []
    now = utcnow()
    ids = [row["id"] for row in gone]
    conn.execute(
        update(a)
        .where(a.c.id.in_(ids))
        .values(
            status=AlarmStatus.cleared.value, open_key=None, cleared_at=now, cleared_by=terminal_id
        )
    )
    effects(
        conn,
        actor,
        [
            Effect(
                "terminals.alarm_cleared",
                "terminal_alarm",
                row["id"],
                {
                    "terminal_id": terminal_id,
                    "code": row["code"],
                    "device": row["device"],
                    "automatic": True,
                },
                ALARM_CLEARED_TOPIC,
                _payload(row, status=AlarmStatus.cleared.value, automatic=True),
                terminal_id,
            )
            for row in gone
        ],
    )
    return ids


# -- staff -----------------------------------------------------------------------------


def _out(row: RowMapping) -> AlarmOut:
    return AlarmOut(
        alarm_id=row["id"],
        terminal_id=row["terminal_id"],
        org_path=row["org_path"],
        code=row["code"],
        device=row["device"],
        severity=row["severity"],
        message=row["message"],
        source=row["source"],
        status=row["status"],
        raised_at=row["raised_at"],
        first_seen_at=row["first_seen_at"],
        last_raised_at=row["last_raised_at"],
        occurrences=row["occurrences"],
        escalation_level=row["escalation_level"],
        escalated_at=row["escalated_at"],
        acknowledged_at=row["acknowledged_at"],
        acknowledged_by=row["acknowledged_by"],
        cleared_at=row["cleared_at"],
        cleared_by=row["cleared_by"],
        note=row["note"],
    )


def _statuses(status: str | Iterable[str] | None) -> list[str] | None:
    if status is None:
        return None
    wanted = [status] if isinstance(status, str) else list(status)
    out: list[str] = []
    for value in wanted:
        try:
            out.append(AlarmStatus(value).value)
        except ValueError:
            raise ValidationError(
                _("Unknown alarm status {status}"), code="invalid_alarm_status", status=value
            ) from None
    return sorted(out)


def list_alarms(
    uow: UnitOfWork,
    *,
    terminal_id: str | None = None,
    status: str | Iterable[str] | None = None,
    limit: int = 200,
) -> list[AlarmOut]:
    """Alarms in the actor's subtree, newest first; ``status`` one or several."""
    uow.actor.require("terminals.read")
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )
    a = alarm_table
    query = select(a).where(uow.actor.scope(a.c.org_path))
    if terminal_id is not None:
        query = query.where(a.c.terminal_id == terminal_id)
    wanted = _statuses(status)
    if wanted is not None:
        query = query.where(a.c.status.in_(wanted))
    query = query.order_by(a.c.first_seen_at.desc(), a.c.id.desc()).limit(limit)
    return [_out(row) for row in uow.connection.execute(query).mappings()]


def _visible(uow: UnitOfWork, alarm_id: str) -> RowMapping:
    a = alarm_table
    query = select(a).where(a.c.id == alarm_id)
    if uow.dialect == "postgresql":
        query = query.with_for_update()
    row = uow.connection.execute(query).mappings().first() if isinstance(alarm_id, str) else None
    if row is None or not uow.actor.sees(row["org_path"]):
        raise NotFound(_("No such alarm"), code="alarm_not_found")
    return row


def get_alarm(uow: UnitOfWork, alarm_id: str) -> AlarmOut:
    uow.actor.require("terminals.read")
    return _out(_visible(uow, alarm_id))


def _conflict(row: RowMapping, target: AlarmStatus) -> Conflict:
    return Conflict(
        _("An alarm that is {current} cannot become {target}"),
        code="alarm_status_conflict",
        current=row["status"],
        target=target.value,
    )


def acknowledge_alarm(uow: UnitOfWork, alarm_id: str, note: str = "") -> AlarmOut:
    """Staff take an open alarm on: it stops escalating."""
    uow.actor.require("terminals.write")
    text = note_text(note)
    row = _visible(uow, alarm_id)
    if row["status"] != AlarmStatus.open.value:
        raise _conflict(row, AlarmStatus.acknowledged)
    now = utcnow()
    values = {
        "status": AlarmStatus.acknowledged.value,
        "acknowledged_at": now,
        "acknowledged_by": uow.actor.id,
        "note": text or row["note"],
    }
    uow.connection.execute(update(alarm_table).where(alarm_table.c.id == alarm_id).values(values))
    uow_effects(
        uow,
        [
            Effect(
                "terminals.alarm_acknowledged",
                "terminal_alarm",
                alarm_id,
                {"terminal_id": row["terminal_id"], "code": row["code"], "note": text},
                ALARM_ACKNOWLEDGED_TOPIC,
                _payload(row, status=AlarmStatus.acknowledged.value),
                row["terminal_id"],
            )
        ],
    )
    return get_alarm(uow, alarm_id)


def clear_alarm(uow: UnitOfWork, alarm_id: str, note: str = "") -> AlarmOut:
    """Staff close an open or acknowledged alarm; the next raise of its code and device
    opens a new one."""
    uow.actor.require("terminals.write")
    text = note_text(note)
    row = _visible(uow, alarm_id)
    if row["status"] == AlarmStatus.cleared.value:
        raise _conflict(row, AlarmStatus.cleared)
    values = {
        "status": AlarmStatus.cleared.value,
        "open_key": None,
        "cleared_at": utcnow(),
        "cleared_by": uow.actor.id,
        "note": text or row["note"],
    }
    uow.connection.execute(update(alarm_table).where(alarm_table.c.id == alarm_id).values(values))
    uow_effects(
        uow,
        [
            Effect(
                "terminals.alarm_cleared",
                "terminal_alarm",
                alarm_id,
                {"terminal_id": row["terminal_id"], "code": row["code"], "note": text},
                ALARM_CLEARED_TOPIC,
                _payload(row, status=AlarmStatus.cleared.value, automatic=False),
                row["terminal_id"],
            )
        ],
    )
    return get_alarm(uow, alarm_id)


def escalate_alarms(uow: UnitOfWork, *, minutes: float | None = None) -> int:
    """Move every alarm still ``open`` (not acknowledged) one escalation level up once
    ``minutes`` (default: ``escalation_minutes()``) have passed since it was first seen
    or last escalated, up to MAX_ESCALATION_LEVEL. A timer; returns how many moved."""
    uow.actor.require("terminals.write")
    wait = timedelta(minutes=escalation_minutes() if minutes is None else minutes)
    now = utcnow()
    a = alarm_table
    query = select(a).where(
        a.c.status == AlarmStatus.open.value,
        a.c.escalation_level < MAX_ESCALATION_LEVEL,
        a.c.first_seen_at <= now - wait,
    )
    if uow.dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = [
        row
        for row in uow.connection.execute(query).mappings()
        if (row["escalated_at"] or row["first_seen_at"]) <= now - wait
    ]
    for row in due:
        level = row["escalation_level"] + 1
        uow.connection.execute(
            update(a).where(a.c.id == row["id"]).values(escalation_level=level, escalated_at=now)
        )
        uow_effects(
            uow,
            [
                Effect(
                    "terminals.alarm_escalated",
                    "terminal_alarm",
                    row["id"],
                    {"terminal_id": row["terminal_id"], "code": row["code"], "level": level},
                    ALARM_ESCALATED_TOPIC,
                    _payload(row, escalation_level=level),
                    row["terminal_id"],
                )
            ],
        )
    return len(due)


def live_alarm_tally(
    uow: UnitOfWork, terminal_ids: Sequence[str]
) -> dict[str, tuple[int, str | None]]:
    """For each of ``terminal_ids`` with live alarms (open or acknowledged) in the
    actor's subtree: how many, and the worst severity among them. One grouped query
    per 500 ids."""
    uow.actor.require("terminals.read")
    a = alarm_table
    live = [AlarmStatus.open.value, AlarmStatus.acknowledged.value]
    tally: dict[str, tuple[int, str | None]] = {}
    for start in range(0, len(terminal_ids), 500):
        part = list(terminal_ids[start : start + 500])
        rows = uow.connection.execute(
            select(a.c.terminal_id, a.c.severity, func.count())
            .where(
                a.c.terminal_id.in_(part),
                a.c.status.in_(live),
                uow.actor.scope(a.c.org_path),
            )
            .group_by(a.c.terminal_id, a.c.severity)
        )
        for terminal_id, severity, count in rows:
            total, worst = tally.get(terminal_id, (0, None))
            rank = SEVERITY_RANK.get(Severity(severity), 0)
            if worst is None or rank > SEVERITY_RANK.get(Severity(worst), 0):
                worst = severity
            tally[terminal_id] = (total + int(count), worst)
    return tally
