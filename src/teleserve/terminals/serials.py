"""Serial records: the answer to each state-changing TSP/1 request, by (terminal_id, serial).

The money hot path (DESIGN.md section 4): SQLAlchemy Core on the caller's connection, a
few statements per batch whatever its size, no ORM, no permission check (the gateway
calls this with the terminal already authenticated). PROTOCOL.md, "Serial numbers,
retransmission and idempotency", is the contract; how the gateway uses this module:

1. Before processing a state-changing request, ``get_records`` for its key. Found with
   the same serv_type and body digest (``SerialRecord.matches``): resend the stored
   answer. Found otherwise: ``10003`` with ``details.last_serial`` (``last_serial``).
   A REVERSAL marker (``RecordKind.reversal_marker``) is not an answer: the payment
   is processed, ``held`` with ``reversed_original``, and ``replace_markers`` swaps
   the marker for its answer.
2. Otherwise process it inside a savepoint, then ``insert_or_get`` its record in the
   same transaction. ``Claim.inserted`` false means a resend raced the original and the
   original won (on PostgreSQL the insert waited for it to commit; on SQLite the
   transaction's write lock ordered them): roll the savepoint back and answer from
   ``Claim.record`` instead. Only ``00000`` and ``2xxxx`` / ``3xxxx`` answers are
   recorded (``recordable``).

Both channels share one record space per terminal. Money requests (2001, 2002, 2009) and
REVERSAL markers are kept for good, other records for ``settings.terminal_serial_retention_days``
(``purge``), and a terminal's highest record is never purged, so ``last_serial`` never
goes back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, tuple_, update

from teleserve.core.db import execute_many, insert_or_nothing, insert_or_nothing_from_arrays
from teleserve.core.reads import fetch
from teleserve.terminals.models import RecordKind, serial_table

__all__ = [
    "KEPT_FOR_GOOD",
    "Claim",
    "SerialRecord",
    "body_digest",
    "get_records",
    "insert_or_get",
    "last_serial",
    "purge",
    "recordable",
    "replace_markers",
]

# Money serv_types (CASH_PAYMENT, CARD_PAYMENT, REVERSAL): their records are kept for
# good. The same set as ``gateway.catalog.MONEY_SERV_TYPES`` (a test holds them together:
# a domain does not import the gateway).
KEPT_FOR_GOOD = frozenset({2001, 2002, 2009})

# Keys per statement: well under SQLite's 32,766 bound parameters (two per key).
_CHUNK = 500

_COLUMNS = (
    serial_table.c.terminal_id,
    serial_table.c.serial,
    serial_table.c.kind,
    serial_table.c.serv_type,
    serial_table.c.body_sha256,
    serial_table.c.err_number,
    serial_table.c.answer,
    serial_table.c.created_at,
)


@dataclass(frozen=True, slots=True)
class SerialRecord:
    terminal_id: str
    serial: int
    serv_type: int
    body_sha256: str  # hex SHA-256 of the request body's exact bytes (``body_digest``)
    err_number: str  # "00000", or the 2xxxx / 3xxxx business error
    answer: str  # the answer body's exact JSON text
    created_at: datetime
    kind: RecordKind = RecordKind.answer

    @property
    def key(self) -> tuple[str, int]:
        return (self.terminal_id, self.serial)

    @property
    def is_marker(self) -> bool:
        return self.kind is RecordKind.reversal_marker

    def matches(self, serv_type: int, body_sha256: str) -> bool:
        """Whether a request with this serv_type and body digest is a resend of the one
        recorded here (answer it again) rather than another request (``10003``)."""
        return (
            not self.is_marker and self.serv_type == serv_type and self.body_sha256 == body_sha256
        )

    def row(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "serial": self.serial,
            "kind": self.kind.value,
            "serv_type": self.serv_type,
            "body_sha256": self.body_sha256,
            "err_number": self.err_number,
            "answer": self.answer,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Claim:
    """What ``insert_or_get`` did for one record: ``inserted`` by this call, or the one
    already stored under its key (``record``)."""

    record: SerialRecord
    inserted: bool


def body_digest(body: bytes) -> str:
    """Hex SHA-256 of a request body's bytes, as received (never re-encoded JSON: a resend
    must carry the same bytes)."""
    return hashlib.sha256(body).hexdigest()


def recordable(err_number: str) -> bool:
    """Whether an answer is recorded: success and business errors (``2xxxx``, ``3xxxx``);
    protocol (``1xxxx``) and server (``9xxxx``) errors changed nothing and may be retried."""
    return err_number == "00000" or err_number[:1] in ("2", "3")


def _record(row: Any) -> SerialRecord:
    return SerialRecord(
        terminal_id=row.terminal_id,
        serial=row.serial,
        serv_type=row.serv_type,
        body_sha256=row.body_sha256,
        err_number=row.err_number,
        answer=row.answer,
        created_at=row.created_at,
        kind=RecordKind(row.kind),
    )


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


# SQLite (3.40) answers ``(terminal_id, serial) IN ((?, ?), ...)`` with a scan of the whole
# table; an OR of key equalities is a "MULTI-INDEX OR" of primary-key probes. Statements
# are built once per size (a batch is padded to the next size by repeating its last key),
# so SQLAlchemy compiles a handful of them, not one per batch length.
_PROBE_SIZES = (1, 4, 16, 64)
_PROBES: dict[int, Any] = {}


def _probe(size: int) -> Any:
    statement = _PROBES.get(size)
    if statement is None:
        t = serial_table
        statement = select(*_COLUMNS).where(
            or_(
                *(
                    and_(t.c.terminal_id == bindparam(f"t{n}"), t.c.serial == bindparam(f"s{n}"))
                    for n in range(size)
                )
            )
        )
        _PROBES[size] = statement
    return statement


def get_records(
    conn: Connection, keys: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], SerialRecord]:
    """The stored records among ``keys`` (absent keys are left out)."""
    wanted = sorted(set(keys))
    found: dict[tuple[str, int], SerialRecord] = {}
    if conn.dialect.name == "sqlite":
        largest = _PROBE_SIZES[-1]
        for start in range(0, len(wanted), largest):
            part = wanted[start : start + largest]
            size = next(size for size in _PROBE_SIZES if size >= len(part))
            padded = part + [part[-1]] * (size - len(part))
            params: dict[str, Any] = {}
            for n, (terminal_id, serial) in enumerate(padded):
                params[f"t{n}"] = terminal_id
                params[f"s{n}"] = serial
            for row in fetch(conn, _probe(size), params):
                record = _record(row)
                found[record.key] = record
        return found
    key_columns = tuple_(serial_table.c.terminal_id, serial_table.c.serial)
    for chunk in _chunks(wanted):
        query = select(*_COLUMNS).where(key_columns.in_(list(chunk)))
        for row in conn.execute(query):
            record = _record(row)
            found[record.key] = record
    return found


def insert_or_get(
    conn: Connection, records: Sequence[SerialRecord], *, absent: bool = False
) -> list[Claim]:
    """Insert each record whose key is free; returns one ``Claim`` per record, in order.

    A key already stored — by an earlier transaction, a concurrent one that committed
    first, or an earlier record of this batch — is not overwritten: its claim holds the
    stored record with ``inserted`` false. Rows are written in key order, so concurrent
    batches on PostgreSQL take their row locks in one order and never deadlock.

    ``absent``: the caller read these keys in this transaction and found none of them
    (the money batch does, first thing): on SQLite, whose transaction has held the one
    write lock since, the keys are not read again."""
    if not records:
        return []
    first: dict[tuple[str, int], SerialRecord] = {}
    for record in records:
        first.setdefault(record.key, record)
    ordered = [first[key] for key in sorted(first)]
    if conn.dialect.name == "postgresql":
        inserted = _insert_postgresql(conn, ordered)
    else:
        inserted = _insert_sqlite(conn, ordered, absent=absent)
    stored = {key: first[key] for key in inserted}
    missing = [key for key in first if key not in inserted]
    if missing:
        stored.update(get_records(conn, missing))
    claims: list[Claim] = []
    claimed: set[tuple[str, int]] = set()
    for record in records:
        key = record.key
        fresh = key in inserted and key not in claimed  # a later duplicate gets the first
        claimed.add(key)
        claims.append(Claim(stored[key], fresh))
    return claims


def _insert_postgresql(conn: Connection, ordered: Sequence[SerialRecord]) -> set[tuple[str, int]]:
    # ON CONFLICT DO NOTHING waits for a concurrent transaction holding the same key: it
    # returns nothing for that row once the other commits, or inserts once it rolls back.
    # One statement from arrays per chunk (db.insert_or_nothing_from_arrays), in key order.
    inserted: set[tuple[str, int]] = set()
    for part in _chunks(ordered):
        rows = [record.row() for record in part]
        for row in insert_or_nothing_from_arrays(
            conn, serial_table, rows, returning=("terminal_id", "serial")
        ):
            inserted.add((str(row.terminal_id), int(row.serial)))
    return inserted


def _insert_sqlite(
    conn: Connection, ordered: Sequence[SerialRecord], *, absent: bool
) -> set[tuple[str, int]]:
    # The transaction holds SQLite's one write lock from its first statement (BEGIN
    # IMMEDIATE), so no other writer can add a key between this read and the insert.
    if absent:
        fresh = list(ordered)
    else:
        existing = set(get_records(conn, [record.key for record in ordered]))
        fresh = [record for record in ordered if record.key not in existing]
    if fresh:
        rows = [record.row() for record in fresh]
        written = execute_many(conn, insert_or_nothing(conn, serial_table), rows)
        if written != len(fresh):  # a key said to be absent was there after all
            raise RuntimeError("serial records changed under SQLite's write lock")
    return {record.key for record in fresh}


def replace_markers(conn: Connection, records: Sequence[SerialRecord]) -> int:
    """Swap REVERSAL markers for the answers of the payments that arrived after them;
    returns how many markers were replaced (a key that holds no marker is left alone)."""
    statement = (
        update(serial_table)
        .where(
            serial_table.c.terminal_id == bindparam("k_terminal_id"),
            serial_table.c.serial == bindparam("k_serial"),
            serial_table.c.kind == RecordKind.reversal_marker.value,
        )
        .values(
            kind=RecordKind.answer.value,
            serv_type=bindparam("serv_type"),
            body_sha256=bindparam("body_sha256"),
            err_number=bindparam("err_number"),
            answer=bindparam("answer"),
            created_at=bindparam("created_at"),
        )
    )
    rows = []
    for record in records:
        if record.is_marker:
            raise ValueError("a marker is replaced by an answer, not by another marker")
        row = record.row()
        row["k_terminal_id"] = row.pop("terminal_id")
        row["k_serial"] = row.pop("serial")
        del row["kind"]
        rows.append(row)
    if not rows:
        return 0
    return int(conn.execute(statement, rows).rowcount)


def last_serial(conn: Connection, terminal_id: str) -> int:
    """The highest serial recorded for ``terminal_id``, REVERSAL markers included; 0 for
    none (SIGN_ON answers it; ``10003`` gives it as ``details.last_serial``)."""
    query = select(func.max(serial_table.c.serial)).where(serial_table.c.terminal_id == terminal_id)
    return int(conn.scalar(query) or 0)


def purge(conn: Connection, before: datetime) -> int:
    """Delete records created before ``before``, except money records, REVERSAL markers
    and each terminal's highest record (``last_serial`` must never go back); returns the
    number deleted."""
    t = serial_table
    later = serial_table.alias("later")
    # A later serial of the same terminal exists: one primary-key probe per candidate.
    has_later = (
        select(later.c.serial)
        .where(later.c.terminal_id == t.c.terminal_id, later.c.serial > t.c.serial)
        .exists()
    )
    statement = delete(t).where(
        t.c.created_at < before,
        t.c.kind == RecordKind.answer.value,
        t.c.serv_type.not_in(sorted(KEPT_FOR_GOOD)),
        has_later,
    )
    return int(conn.execute(statement).rowcount)
