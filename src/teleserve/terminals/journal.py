"""Journal reconciliation (9006 JOURNAL_UPLOAD): a terminal's journal for a business date
against what the server recorded, matched by serial whatever date the server filed each
entry under. The result is answered and kept for staff (``JournalReconciliation``).

How an entry is judged, by its ``serv_type``:

- **2001 / 2002** (payments): the payment recorded under that serial
  (``payments.service.terminal_payments``). None → ``missing_on_server``. Otherwise
  ``mismatched`` when the payment is of the other kind (cash / card), its amount differs,
  or its status *now* (as TSP names it: the caller's ``tsp_status``) differs from the
  entry's; else ``matched``.
- **2009** (reversals): the recorded answer under that serial. None → ``missing_on_server``;
  a record of another serv_type → ``mismatched``; a ``00000`` answer is compared on its
  ``status`` (the original's status it answered), a business-error answer on its
  err_number (a terminal journals the ``20008`` / ``20009`` it received as the status).
  A reversal has no amount of its own: ``amount`` is not compared.
- **any other serv_type**: the recorded answer under that serial (state-changing requests
  only are recorded). None → ``missing_on_server``; another serv_type → ``mismatched``;
  else ``matched`` (nothing more to compare).

``missing_on_terminal``: the server's money records of that business date the upload did
not list — the kiosk payments (2001, 2002) of this terminal filed under the date,
whatever their status. A reversal is not a record of its own here: it shows in its
payment's status (a reversed card payment is ``voided``, a reversed cash one ``held``),
which is what the kiosk agent journals and uploads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from teleserve.core.clock import utcnow
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.uow import UnitOfWork
from teleserve.payments import service as payments
from teleserve.terminals import serials
from teleserve.terminals.availability import day_bounds
from teleserve.terminals.fleet_base import Effect, canonical, effects, terminal_actor, terminal_info
from teleserve.terminals.fleet_models import reconciliation_table
from teleserve.terminals.fleet_schemas import ReconciliationOut
from teleserve.terminals.models import RecordKind, deposit_table, serial_table

__all__ = [
    "JOURNAL_RECONCILED_TOPIC",
    "DuplicateSerial",
    "Reconciled",
    "list_reconciliations",
    "reconcile_journal",
]

JOURNAL_RECONCILED_TOPIC = "terminals.journal_reconciled"
CASH, CARD, REVERSAL = 2001, 2002, 2009
_KIND_OF_CHANNEL = {"kiosk_cash": CASH, "kiosk_card": CARD}
# A payment's serial record is written in the payment's transaction, so its time is the
# payment's to within a commit; this margin finds the payments filed under a date from
# the serial records around it (the payment's own business_date then decides).
_MARGIN = timedelta(hours=1)
_LIST_MAX = 1000


class DuplicateSerial(ValidationError):
    """An upload that lists a serial twice (``field`` is the path of the second)."""

    default_code = "duplicate_serial"

    def __init__(self, path: str) -> None:
        super().__init__(_("The journal lists a serial twice"), path=path)
        self.path = path


@dataclass(frozen=True, slots=True)
class Reconciled:
    reconciliation_id: str
    matched: int
    missing_on_server: list[int]
    missing_on_terminal: list[int]
    mismatched: list[int]
    details: list[dict[str, Any]] = field(default_factory=list)


def _answer_status(record: serials.SerialRecord) -> str:
    if record.err_number != "00000":
        return record.err_number
    return str(json.loads(record.answer).get("status", ""))


def _payments_on(conn: Connection, terminal_id: str, day: date) -> set[int]:
    """The serials of the terminal's payments filed under ``day``."""
    start, end = day_bounds(day)
    s, d = serial_table, deposit_table
    rows = conn.execute(
        select(s.c.serial).where(
            s.c.terminal_id == terminal_id,
            s.c.kind == RecordKind.answer.value,
            s.c.serv_type.in_([CASH, CARD]),
            s.c.created_at >= start - _MARGIN,
            s.c.created_at < end + _MARGIN,
        )
    ).all()
    candidates = {row.serial for row in rows}
    # Cash deposits carry their business date exactly (and cover payments recorded by a
    # path that keeps no serial record).
    candidates.update(
        conn.execute(
            select(d.c.serial).where(d.c.terminal_id == terminal_id, d.c.business_date == day)
        ).scalars()
    )
    found = payments.terminal_payments(conn, terminal_id, candidates)
    return {serial for serial, payment in found.items() if payment.business_date == day}


def _judge_payment(
    entry: Mapping[str, Any],
    payment: payments.TerminalPayment | None,
    tsp_status: Callable[[str], str],
) -> tuple[str, dict[str, Any] | None]:
    if payment is None:
        return "missing_on_server", None
    server = {
        "serv_type": _KIND_OF_CHANNEL.get(payment.channel, 0),
        "amount": payment.amount,
        "status": tsp_status(payment.status),
    }
    same = all(entry[k] == server[k] for k in ("serv_type", "amount", "status"))
    return ("matched", None) if same else ("mismatched", server)


def _judge_record(
    entry: Mapping[str, Any], record: serials.SerialRecord | None
) -> tuple[str, dict[str, Any] | None]:
    if record is None or record.kind is RecordKind.reversal_marker:
        return "missing_on_server", None
    server: dict[str, Any] = {"serv_type": record.serv_type, "err_number": record.err_number}
    if record.serv_type != entry["serv_type"]:
        return "mismatched", server
    if record.serv_type == REVERSAL:
        server["status"] = _answer_status(record)
        if server["status"] != entry["status"]:
            return "mismatched", server
    return "matched", None


def reconcile_journal(
    conn: Connection,
    terminal_id: str,
    business_date: date,
    entries: Sequence[Mapping[str, Any]],
    *,
    tsp_status: Callable[[str], str],
) -> Reconciled:
    """JOURNAL_UPLOAD (9006), as ``gateway.fields`` validated it (Core, no actor).
    ``tsp_status`` maps a payment's status to the protocol's (the gateway owns the wire
    names). A serial listed twice is ``DuplicateSerial`` and nothing is kept."""
    info = terminal_info(conn, terminal_id)
    if info is None:
        raise ValidationError(_("No such terminal"))
    seen: set[int] = set()
    for i, entry in enumerate(entries):
        if entry["serial"] in seen:
            raise DuplicateSerial(f"entries[{i}].serial")
        seen.add(entry["serial"])
    money = [e["serial"] for e in entries if e["serv_type"] in (CASH, CARD)]
    paid = payments.terminal_payments(conn, terminal_id, money)
    others = [e["serial"] for e in entries if e["serv_type"] not in (CASH, CARD)]
    records = serials.get_records(conn, [(terminal_id, s) for s in others])
    on_day = _payments_on(conn, terminal_id, business_date)
    matched = 0
    missing_on_server: list[int] = []
    mismatched: list[int] = []
    details: list[dict[str, Any]] = []
    for entry in entries:
        serial = entry["serial"]
        if entry["serv_type"] in (CASH, CARD):
            verdict, server = _judge_payment(entry, paid.get(serial), tsp_status)
        else:
            verdict, server = _judge_record(entry, records.get((terminal_id, serial)))
        if verdict == "matched":
            matched += 1
        elif verdict == "missing_on_server":
            missing_on_server.append(serial)
        else:
            mismatched.append(serial)
            terminal_side = {k: entry[k] for k in ("serv_type", "amount", "status")}
            details.append({"serial": serial, "terminal": terminal_side, "server": server})
    missing_on_terminal = sorted(on_day - seen)
    now = utcnow()
    result = Reconciled(
        new_id(), matched, missing_on_server, missing_on_terminal, mismatched, details
    )
    conn.execute(
        reconciliation_table.insert().values(
            id=result.reconciliation_id,
            terminal_id=terminal_id,
            org_path=info.org_path,
            business_date=business_date,
            uploaded_at=now,
            entries=len(entries),
            matched=matched,
            missing_on_server=len(missing_on_server),
            missing_on_terminal=len(missing_on_terminal),
            mismatched=len(mismatched),
            detail=canonical(
                {
                    "missing_on_server": missing_on_server,
                    "missing_on_terminal": missing_on_terminal,
                    "mismatched": details,
                }
            ),
        )
    )
    counts = {
        "entries": len(entries),
        "matched": matched,
        "missing_on_server": len(missing_on_server),
        "missing_on_terminal": len(missing_on_terminal),
        "mismatched": len(mismatched),
    }
    effects(
        conn,
        terminal_actor(info),
        [
            Effect(
                "terminals.journal_reconciled",
                "terminal_journal_reconciliation",
                result.reconciliation_id,
                {"terminal_id": terminal_id, "business_date": business_date.isoformat(), **counts},
                JOURNAL_RECONCILED_TOPIC,
                {
                    "reconciliation_id": result.reconciliation_id,
                    "terminal_id": terminal_id,
                    "org_path": info.org_path,
                    "business_date": business_date.isoformat(),
                    "clean": counts["entries"] == matched and not missing_on_terminal,
                    **counts,
                },
                terminal_id,
            )
        ],
    )
    return result


def _out(row: RowMapping) -> ReconciliationOut:
    detail = json.loads(row["detail"])
    return ReconciliationOut(
        reconciliation_id=row["id"],
        terminal_id=row["terminal_id"],
        business_date=row["business_date"],
        uploaded_at=row["uploaded_at"],
        entries=row["entries"],
        matched=row["matched"],
        missing_on_server=detail["missing_on_server"],
        missing_on_terminal=detail["missing_on_terminal"],
        mismatched=detail["mismatched"],
    )


def list_reconciliations(
    uow: UnitOfWork,
    *,
    terminal_id: str | None = None,
    business_date: date | None = None,
    limit: int = 100,
) -> list[ReconciliationOut]:
    """Journal uploads in the actor's subtree, newest first (a terminal may upload a date
    more than once; the newest is the current picture)."""
    uow.actor.require("terminals.read")
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )
    r = reconciliation_table
    query = select(r).where(uow.actor.scope(r.c.org_path))
    if terminal_id is not None:
        query = query.where(r.c.terminal_id == terminal_id)
    if business_date is not None:
        query = query.where(r.c.business_date == business_date)
    query = query.order_by(r.c.uploaded_at.desc(), r.c.id.desc()).limit(limit)
    return [_out(row) for row in uow.connection.execute(query).mappings()]
