"""Transactional outbox: messages written in the business transaction, delivered after.

Messages are queued with ``UnitOfWork.emit`` and written in one batch at commit.
Delivery (claiming, handlers, retries, dead letters) lives in ``teleserve.core.worker``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.clock import utcnow
from teleserve.core.db import Base, insert_many, table_of
from teleserve.core.ids import new_id


class OutboxStatus(StrEnum):
    pending = "pending"
    done = "done"
    dead = "dead"


class OutboxMessage(Base):
    __tablename__ = "outbox_message"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    topic: Mapped[str] = mapped_column(String(100))
    key: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(10), default=OutboxStatus.pending)
    attempts: Mapped[int] = mapped_column(default=0)
    available_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_message_due", "status", "available_at"),)


def message_row(topic: str, payload: dict[str, Any], *, key: str | None) -> dict[str, Any]:
    """A new pending message as a row for ``write`` (which stamps its times)."""
    return {
        "id": new_id(),
        "topic": topic,
        "key": key,
        "payload": payload,
        "status": OutboxStatus.pending.value,
        "attempts": 0,
        "locked_until": None,
        "last_error": None,
        "done_at": None,
    }


# Topics whose messages are written already done: the domain events nobody subscribes
# to in this deployment, as the serve process knows once it has loaded every handler
# (``acknowledge_at_insert``). The worker would mark them done anyway, unread
# (``core.worker``, "unheard events") — on SQLite in a write transaction of its own that
# the money writer then waits for: at 1,000 kiosk payments/s, a thousand such rows a
# second. Empty (nothing written done) in any other process.
_DONE_AT_INSERT: frozenset[str] = frozenset()


def acknowledge_at_insert(topics: Iterable[str]) -> None:
    """From now on, write messages of ``topics`` as done (``frozenset()``: none)."""
    global _DONE_AT_INSERT  # process-wide: set by the serve process at start
    _DONE_AT_INSERT = frozenset(topics)


def write(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert queued messages in one batched statement (called at commit). Every message
    is created, and available, at the commit's time: no worker can see it before, and one
    time for the batch is converted for the database once, not twice per message."""
    now = utcnow()
    done = _DONE_AT_INSERT
    for row in rows:
        row["available_at"] = row["created_at"] = now
        if row["topic"] in done:
            row["status"] = OutboxStatus.done.value
            row["done_at"] = now
    insert_many(conn, table_of(OutboxMessage), rows)
