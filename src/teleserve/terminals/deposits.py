"""The notes of every recorded CASH_PAYMENT, by cash box (``CashDeposit``).

Written by the gateway's money path in the payment's own transaction, whatever the
payment's status (PROTOCOL.md: the box is expected to hold every note of every recorded
2001 for it). Core and batched, like ``terminals.serials``: no actor, the gateway has
authenticated the terminal. Cash collections (清机) compare a box's expected notes, summed
from these rows, with the notes counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from teleserve.core.db import insert_many
from teleserve.terminals.models import deposit_table

__all__ = ["Deposit", "canonical_notes", "deposit_count", "expected_notes", "record_deposits"]

# Built once: ``json.dumps`` with options builds an encoder per call (one per payment).
_NOTES_JSON = json.JSONEncoder(separators=(",", ":"))


def canonical_notes(notes: Iterable[Mapping[str, Any]]) -> list[dict[str, int]]:
    """Notes merged per value and sorted by value (a terminal may list a value twice)."""
    counts: dict[int, int] = {}
    for note in notes:
        counts[int(note["value"])] = counts.get(int(note["value"]), 0) + int(note["count"])
    return [{"value": value, "count": counts[value]} for value in sorted(counts)]


@dataclass(frozen=True, slots=True)
class Deposit:
    payment_id: str
    terminal_id: str
    box_id: str
    serial: int
    notes: list[dict[str, int]]  # canonical_notes
    business_date: date
    created_at: datetime

    @property
    def amount(self) -> int:
        return sum(note["value"] * note["count"] for note in self.notes)

    def row(self) -> dict[str, Any]:
        return {
            "payment_id": self.payment_id,
            "terminal_id": self.terminal_id,
            "box_id": self.box_id,
            "serial": self.serial,
            "amount": self.amount,
            "notes": _NOTES_JSON.encode(self.notes),
            "business_date": self.business_date,
            "created_at": self.created_at,
        }


def record_deposits(conn: Connection, deposits: Sequence[Deposit]) -> None:
    """Insert the deposits of a batch of recorded cash payments (one statement)."""
    if deposits:
        insert_many(conn, deposit_table, [deposit.row() for deposit in deposits])


def expected_notes(conn: Connection, terminal_id: str, box_id: str) -> list[dict[str, int]]:
    """Every note the box should hold: the canonical sum of all its deposits."""
    t = deposit_table
    rows = conn.execute(
        select(t.c.notes).where(t.c.terminal_id == terminal_id, t.c.box_id == box_id)
    ).scalars()
    return canonical_notes(note for text in rows for note in json.loads(text))


def deposit_count(conn: Connection, terminal_id: str, box_id: str) -> int:
    """How many cash payments went into the box."""
    t = deposit_table
    query = select(func.count()).where(t.c.terminal_id == terminal_id, t.c.box_id == box_id)
    return int(conn.scalar(query) or 0)
