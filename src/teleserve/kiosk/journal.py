"""The kiosk's durable journal (SQLite, WAL, ``synchronous=FULL``).

It holds what must survive a crash or a power cut:

- the **serial counter**, one for both channels, never reused: each serial is committed
  before its request leaves, and ``move_past`` jumps it over the server's ``last_serial``;
- every **state-changing request** (``entry``) with its serial and exact body bytes,
  written *before* it is sent (for cash: before the notes are stacked) and only ever
  resent with that serial and those bytes, until it has a final answer;
- the **cash-in in progress** (notes in escrow, not yet confirmed), the **cash box** in
  use, the remote **commands** already executed.

One writer (the agent's event loop); each change is one short transaction, so a crash
leaves either the whole change or none of it. Writes are synchronous on purpose: the
kiosk serves one customer at a time and an fsync is a few milliseconds, while a request
must never leave before its journal row is on disk.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from teleserve.gateway.frame import MAX_SERIAL

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entry (
    serial INTEGER PRIMARY KEY,
    serv_type INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    replay INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    business_date TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_attempt_ms INTEGER,
    err_number TEXT,
    answer TEXT,
    answered_ms INTEGER,
    payment_status TEXT,
    held_reason TEXT,
    amount INTEGER,
    cash_box_id TEXT,
    notes TEXT,
    remark TEXT
);
CREATE INDEX IF NOT EXISTS entry_state ON entry (state);
CREATE TABLE IF NOT EXISTS cash_in (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    msisdn TEXT NOT NULL,
    opened_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS command (
    command_id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    result TEXT NOT NULL,
    done_ms INTEGER NOT NULL
);
"""

# The money requests whose answer carries a payment status (PROTOCOL.md).
PAYMENTS = frozenset({2001, 2002})
FINAL_PAYMENT_STATES = frozenset({"completed", "held", "voided"})


class State(StrEnum):
    # Cash only: written with the escrow contents, the notes not yet stacked. Never sent
    # in this state: recovery asks the cash acceptor what became of the notes.
    JOURNALED = "journaled"
    # To be sent, and resent with the same serial and bytes until answered.
    PENDING = "pending"
    # A final answer: 00000 or a recorded business error (2xxxx / 3xxxx).
    ANSWERED = "answered"
    # 10003: the server holds this serial with another body. Never resent or reissued.
    CONFLICT = "conflict"
    # A 1xxxx refusal that resending cannot change (10001, 10004, 10005, 10009): the
    # server recorded nothing.
    REJECTED = "rejected"
    # Cash journaled but returned to the customer: it was never sent.
    CANCELLED = "cancelled"
    # An interactive request (replay off) that got no answer while the customer waited.
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Entry:
    serial: int
    serv_type: int
    body: bytes
    state: State
    replay: bool
    created_ms: int
    business_date: str
    attempts: int
    err_number: str | None
    answer: str | None
    payment_status: str | None
    held_reason: str | None
    amount: int | None
    cash_box_id: str | None
    notes: dict[int, int] | None
    remark: str | None

    @property
    def request(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def answer_body(self) -> dict[str, Any] | None:
        if self.answer is None:
            return None
        value: dict[str, Any] = json.loads(self.answer)
        return value


class JournalError(RuntimeError):
    """The journal cannot do what was asked (a programming error or a broken file)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def notes_json(notes: Mapping[int, int]) -> str:
    return json.dumps({str(v): c for v, c in sorted(notes.items())})


def _notes(text: str | None) -> dict[int, int] | None:
    if text is None:
        return None
    return {int(v): int(c) for v, c in json.loads(text).items()}


class Journal:
    """The journal file. Not thread-safe: one event loop owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: every transaction is an explicit BEGIN IMMEDIATE … COMMIT.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed row survives a power cut, not only a crash of the process.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                self._db.execute(statement)
        with self._tx() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT INTO meta VALUES ('last_serial', '0')")
            elif int(found["value"]) != SCHEMA_VERSION:
                raise JournalError(f"journal schema {found['value']} is not {SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- meta ----------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def _set_meta(self, db: sqlite3.Connection, key: str, value: str) -> None:
        db.execute(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get(self, key: str) -> str | None:
        """A free-form setting (e.g. the last journal upload date)."""
        return self._meta(f"x:{key}")

    def put(self, key: str, value: str) -> None:
        with self._tx() as db:
            self._set_meta(db, f"x:{key}", value)

    # -- the serial counter -------------------------------------------------------------
    @property
    def last_serial(self) -> int:
        return int(self._meta("last_serial") or 0)

    def _take_serial(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'last_serial'").fetchone()
        serial = int(row["value"]) + 1
        if serial > MAX_SERIAL:
            # PROTOCOL.md: serial numbers never wrap. A terminal that used them all up
            # needs a new terminal id.
            raise JournalError("the serial counter is exhausted (999999999999)")
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_serial'", (str(serial),))
        return serial

    def next_serial(self) -> int:
        """A fresh serial for a request that is not journaled (queries, keepalives,
        sign-on); committed before the request is built, so never handed out twice."""
        with self._tx() as db:
            return self._take_serial(db)

    def move_past(self, server_last_serial: int) -> bool:
        """SIGN_ON's ``last_serial`` is the highest serial the server recorded: a counter
        behind it (a lost or restored disk) jumps past it. True when it moved."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'last_serial'").fetchone()
            if int(row["value"]) >= server_last_serial:
                return False
            db.execute(
                "UPDATE meta SET value = ? WHERE key = 'last_serial'", (str(server_last_serial),)
            )
            return True

    # -- journaled requests ---------------------------------------------------------------
    def add(
        self,
        serv_type: int,
        body: bytes,
        *,
        business_date: str,
        state: State = State.PENDING,
        replay: bool = True,
        amount: int | None = None,
        cash_box_id: str | None = None,
        notes: Mapping[int, int] | None = None,
        close_cash_in: bool = False,
    ) -> Entry:
        """Journal a request under a new serial, in one transaction (``close_cash_in``:
        the cash-in in progress becomes this entry, atomically)."""
        if state not in (State.PENDING, State.JOURNALED):
            raise JournalError(f"a new entry is pending or journaled, not {state}")
        with self._tx() as db:
            serial = self._take_serial(db)
            db.execute(
                "INSERT INTO entry (serial, serv_type, body, state, replay, created_ms,"
                " business_date, amount, cash_box_id, notes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    serial,
                    serv_type,
                    body,
                    state.value,
                    int(replay),
                    _now_ms(),
                    business_date,
                    amount,
                    cash_box_id,
                    None if notes is None else notes_json(notes),
                ),
            )
            if close_cash_in:
                db.execute("DELETE FROM cash_in")
        return self.entry(serial)

    def entry(self, serial: int) -> Entry:
        row = self._db.execute("SELECT * FROM entry WHERE serial = ?", (serial,)).fetchone()
        if row is None:
            raise JournalError(f"no journal entry {serial}")
        return _entry(row)

    def find(self, serial: int) -> Entry | None:
        row = self._db.execute("SELECT * FROM entry WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else _entry(row)

    def entries(
        self, *states: State, replay_only: bool = False, serv_types: Sequence[int] = ()
    ) -> list[Entry]:
        """Entries in any of ``states`` (all when none), oldest serial first."""
        sql = "SELECT * FROM entry WHERE 1 = 1"
        args: list[Any] = []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += [s.value for s in states]
        if replay_only:
            sql += " AND replay = 1"
        if serv_types:
            sql += f" AND serv_type IN ({','.join('?' * len(serv_types))})"
            args += list(serv_types)
        return [_entry(r) for r in self._db.execute(sql + " ORDER BY serial", args)]

    def _transition(self, serial: int, allowed: tuple[State, ...], **values: Any) -> Entry:
        sets = ", ".join(f"{name} = ?" for name in values)
        with self._tx() as db:
            row = db.execute("SELECT state FROM entry WHERE serial = ?", (serial,)).fetchone()
            if row is None:
                raise JournalError(f"no journal entry {serial}")
            if State(row["state"]) not in allowed:
                raise JournalError(f"entry {serial} is {row['state']}, not {allowed}")
            db.execute(f"UPDATE entry SET {sets} WHERE serial = ?", [*values.values(), serial])  # noqa: S608
        return self.entry(serial)

    def mark_stacked(self, serial: int) -> Entry:
        """The notes of a journaled cash entry are in the box: it may be sent now."""
        return self._transition(serial, (State.JOURNALED,), state=State.PENDING.value)

    def mark_cancelled(self, serial: int, remark: str) -> Entry:
        """The notes went back to the customer: the entry was never sent."""
        return self._transition(
            serial, (State.JOURNALED,), state=State.CANCELLED.value, remark=remark
        )

    def note_attempt(self, serial: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE entry SET attempts = attempts + 1, last_attempt_ms = ? WHERE serial = ?",
                (_now_ms(), serial),
            )

    def record_answer(self, serial: int, err_number: str, answer: Mapping[str, Any]) -> Entry:
        """The final answer (00000, 2xxxx, 3xxxx), kept as it came: a recorded answer
        never changes. A payment's status starts as the answer's."""
        text = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
        entry = self.entry(serial)
        status = held = None
        if entry.serv_type in PAYMENTS and err_number == "00000":
            status = _str_or_none(answer.get("status"))
            held = _str_or_none(answer.get("held_reason"))
        return self._transition(
            serial,
            (State.PENDING,),
            state=State.ANSWERED.value,
            err_number=err_number,
            answer=text,
            answered_ms=_now_ms(),
            payment_status=status,
            held_reason=held,
        )

    def mark_final_failure(self, serial: int, state: State, err_number: str, remark: str) -> Entry:
        """10003 (``CONFLICT``), an unchangeable 1xxxx (``REJECTED``) or an interactive
        request given up (``ABANDONED``)."""
        if state not in (State.CONFLICT, State.REJECTED, State.ABANDONED):
            raise JournalError(f"{state} is not a final failure")
        return self._transition(
            serial, (State.PENDING,), state=state.value, err_number=err_number, remark=remark
        )

    def update_payment_status(self, serial: int, status: str, held_reason: str | None) -> Entry:
        """The payment's state now (TXN_STATUS, or the original's status in a REVERSAL
        answer); the recorded answer stays as it was."""
        return self._transition(
            serial, (State.ANSWERED,), payment_status=status, held_reason=held_reason
        )

    # -- the cash-in in progress ----------------------------------------------------------
    def open_cash_in(self, msisdn: str) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM cash_in").fetchone() is not None:
                raise JournalError("a cash-in is already in progress")
            db.execute("INSERT INTO cash_in VALUES (1, ?, ?)", (msisdn, _now_ms()))

    def cash_in(self) -> str | None:
        """The number of the cash-in in progress (notes may be in escrow), or None."""
        row = self._db.execute("SELECT msisdn FROM cash_in").fetchone()
        return None if row is None else str(row["msisdn"])

    def close_cash_in(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM cash_in")

    # -- the cash box -----------------------------------------------------------------
    @property
    def cash_box_id(self) -> str | None:
        return self._meta("cash_box_id")

    def set_cash_box(self, box_id: str) -> None:
        with self._tx() as db:
            self._set_meta(db, "cash_box_id", box_id)

    def box_contents(self, box_id: str) -> dict[int, int]:
        """The notes stacked into ``box_id``: every cash entry for it except those whose
        notes never left escrow (journaled, cancelled)."""
        total: dict[int, int] = {}
        rows = self._db.execute(
            "SELECT notes FROM entry WHERE serv_type = 2001 AND cash_box_id = ?"
            " AND state NOT IN ('journaled', 'cancelled')",
            (box_id,),
        )
        for row in rows:
            for value, count in (_notes(row["notes"]) or {}).items():
                total[value] = total.get(value, 0) + count
        return total

    def journal_collection(self, body: bytes, *, business_date: str, new_box_id: str) -> Entry:
        """CASH_COLLECTION journaled and the new box put in use, atomically: the box was
        swapped when the request was written, whatever the answer."""
        with self._tx() as db:
            serial = self._take_serial(db)
            db.execute(
                "INSERT INTO entry (serial, serv_type, body, state, replay, created_ms,"
                " business_date) VALUES (?, 9003, ?, 'pending', 1, ?, ?)",
                (serial, body, _now_ms(), business_date),
            )
            self._set_meta(db, "cash_box_id", new_box_id)
        return self.entry(serial)

    # -- remote commands ------------------------------------------------------------------
    def command_done(self, command_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM command WHERE command_id = ?", (command_id,)
        ).fetchone()
        return row is not None

    def journal_ack(
        self, command_id: str, command_type: str, result: str, body: bytes, *, business_date: str
    ) -> Entry:
        """The command executed and its COMMAND_ACK journaled together: a command the
        server sends again is not executed twice, and the ack is never lost."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO command VALUES (?, ?, ?, ?)",
                (command_id, command_type, result, _now_ms()),
            )
            serial = self._take_serial(db)
            db.execute(
                "INSERT INTO entry (serial, serv_type, body, state, replay, created_ms,"
                " business_date) VALUES (?, 9005, ?, 'pending', 1, ?, ?)",
                (serial, body, _now_ms(), business_date),
            )
        return self.entry(serial)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        serial=row["serial"],
        serv_type=row["serv_type"],
        body=bytes(row["body"]),
        state=State(row["state"]),
        replay=bool(row["replay"]),
        created_ms=row["created_ms"],
        business_date=row["business_date"],
        attempts=row["attempts"],
        err_number=row["err_number"],
        answer=row["answer"],
        payment_status=row["payment_status"],
        held_reason=row["held_reason"],
        amount=row["amount"],
        cash_box_id=row["cash_box_id"],
        notes=_notes(row["notes"]),
        remark=row["remark"],
    )
