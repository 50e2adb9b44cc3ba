"""What the fleet modules (``alarms``, ``fleet``, ``cash``, ``availability``, ``journal``)
share: the Core read of a terminal, audit records and events written from Core code,
and the small checks of staff input.

Gateway-facing functions take the request's ``Connection`` (Core, no actor: the
gateway has authenticated the terminal). They still leave audit records and outbox
events, in the same transaction: ``effects`` writes them at once through ``core.audit``
and ``core.outbox``, so a savepoint that rolls back drops them with the change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from teleserve.core import audit, outbox
from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.db import json_text
from teleserve.core.errors import NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.uow import UnitOfWork
from teleserve.terminals.models import TerminalStatus, terminal_table

__all__ = [
    "Effect",
    "TerminalInfo",
    "effects",
    "from_ms",
    "note_text",
    "terminal_actor",
    "terminal_info",
    "visible_terminal",
]

NOTE_MAX = 500


@dataclass(frozen=True, slots=True)
class TerminalInfo:
    terminal_id: str
    org_path: str
    site_id: str
    status: TerminalStatus


@dataclass(frozen=True, slots=True)
class Effect:
    """An audit record and, optionally, the outbox event that goes with it."""

    action: str
    subject_type: str
    subject_id: str
    detail: dict[str, Any]
    topic: str | None = None
    payload: dict[str, Any] | None = None
    key: str | None = None


def terminal_info(conn: Connection, terminal_id: str) -> TerminalInfo | None:
    t = terminal_table
    row = conn.execute(
        select(t.c.terminal_id, t.c.org_path, t.c.site_id, t.c.status).where(
            t.c.terminal_id == terminal_id
        )
    ).first()
    if row is None:
        return None
    return TerminalInfo(row.terminal_id, row.org_path, row.site_id, TerminalStatus(row.status))


def visible_terminal(uow: UnitOfWork, terminal_id: str) -> TerminalInfo:
    """The terminal if the actor's subtree holds it; otherwise ``NotFound``, like a
    missing one (no existence leak)."""
    info = terminal_info(uow.connection, terminal_id) if isinstance(terminal_id, str) else None
    if info is None or not uow.actor.sees(info.org_path):
        raise NotFound(_("No such terminal"))
    return info


def terminal_actor(info: TerminalInfo) -> Actor:
    return Actor(ActorKind.terminal, info.terminal_id, info.org_path, frozenset(), info.terminal_id)


def effects(conn: Connection, actor: Actor | None, items: Sequence[Effect]) -> None:
    """Write the audit records and events of a Core-level change in the caller's
    transaction (``actor`` None: the system)."""
    who = actor or SYSTEM
    if not items:
        return
    audit.write(
        conn,
        [
            audit.PendingRecord.of(who, e.action, e.subject_type, e.subject_id, e.detail)
            for e in items
        ],
    )
    rows = [
        outbox.message_row(e.topic, dict(e.payload or {}), key=e.key)
        for e in items
        if e.topic is not None
    ]
    if rows:
        outbox.write(conn, rows)


def uow_effects(uow: UnitOfWork, items: Sequence[Effect]) -> None:
    """The same records through a staff unit of work (written at its commit)."""
    for e in items:
        uow.audit(e.action, e.subject_type, e.subject_id, e.detail)
        if e.topic is not None:
            uow.emit(e.topic, dict(e.payload or {}), key=e.key)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def note_text(value: str, field: str = "note") -> str:
    cleaned = value.strip() if isinstance(value, str) else None
    if cleaned is None or len(cleaned) > NOTE_MAX:
        raise ValidationError(
            _("{field} must be {min} to {max} characters"), field=field, min=0, max=NOTE_MAX
        )
    return cleaned


def canonical(value: Any) -> str:
    """Canonical JSON text (sorted keys, compact, UTF-8): what the JSON columns hold."""
    return json_text(value)


def notes_amount(notes: Sequence[Mapping[str, int]]) -> int:
    return sum(int(n["value"]) * int(n["count"]) for n in notes)
