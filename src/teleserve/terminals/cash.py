"""Cash boxes and collections (清机), and the finance exceptions they raise.

A box is expected to hold every note of every recorded CASH_PAYMENT (2001) for it,
whatever the payment's status (PROTOCOL.md, "Money requests are always recorded"): the
deposits ``terminals.deposits`` keeps. A CASH_COLLECTION (9003) compares the counted
notes with that figure and records it once per (terminal, box):

- ``expected`` is the canonical sum of the box's deposits, read once; the deposits it was
  summed from are linked to the collection (``CollectedDeposit``);
- ``discrepancy`` = counted − expected, in fen; non-zero → a finance exception
  (``surplus`` or ``shortage``), audited and announced (``terminals.cash_discrepancy``);
- collecting a box again → ``BoxAlreadyCollected`` (TSP ``20005``);
- ``new_box_id`` must differ from the collected box and never have been collected itself
  (``InvalidNewBox``, TSP ``10005``): box ids are unique per terminal for ever, or a reused
  id would add an old box's deposits to the new box's expected figure.

A payment naming an already-collected box is still recorded by the money path; it shows
here as a ``late_deposit`` exception, computed on read: a deposit of a collected box that
the collection's expected figure did not include (whether it arrived after the
collection, or committed concurrently with it on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, exists, select, update

from teleserve.core.clock import business_date, utcnow
from teleserve.core.db import insert_many, insert_or_nothing
from teleserve.core.errors import Conflict, NotFound, ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.terminals.deposits import canonical_notes
from teleserve.terminals.fleet_base import (
    Effect,
    canonical,
    effects,
    note_text,
    notes_amount,
    terminal_actor,
    terminal_info,
    uow_effects,
)
from teleserve.terminals.fleet_models import (
    ExceptionKind,
    ExceptionStatus,
    collected_deposit_table,
    collection_table,
    exception_table,
)
from teleserve.terminals.fleet_schemas import CollectionOut, FinanceExceptionOut, Note
from teleserve.terminals.models import deposit_table

__all__ = [
    "CASH_COLLECTED_TOPIC",
    "CASH_DISCREPANCY_TOPIC",
    "EXCEPTION_RESOLVED_TOPIC",
    "BoxAlreadyCollected",
    "Collected",
    "InvalidNewBox",
    "collect_box",
    "list_collections",
    "list_exceptions",
    "resolve_exception",
]

CASH_COLLECTED_TOPIC = "terminals.cash_collected"
CASH_DISCREPANCY_TOPIC = "terminals.cash_discrepancy"
EXCEPTION_RESOLVED_TOPIC = "terminals.cash_exception_resolved"
_LIST_MAX = 1000


class BoxAlreadyCollected(Conflict):
    default_code = "box_already_collected"


class InvalidNewBox(ValidationError):
    default_code = "invalid_new_box"


@dataclass(frozen=True, slots=True)
class Collected:
    collection_id: str
    expected: list[dict[str, int]]
    discrepancy: int


def _collection_of(conn: Connection, terminal_id: str, box_id: str) -> str | None:
    c = collection_table
    found = conn.scalar(select(c.c.id).where(c.c.terminal_id == terminal_id, c.c.box_id == box_id))
    return None if found is None else str(found)


def _already(terminal_id: str, box_id: str, collection_id: str) -> BoxAlreadyCollected:
    return BoxAlreadyCollected(
        _("The cash box {box_id} of {terminal_id} is already collected"),
        box_id=box_id,
        terminal_id=terminal_id,
        collection_id=collection_id,
    )


def collect_box(
    conn: Connection,
    terminal_id: str,
    *,
    box_id: str,
    counted: Sequence[Mapping[str, Any]],
    operator_id: str,
    collected_at: datetime,
    new_box_id: str,
) -> Collected:
    """CASH_COLLECTION (9003), as ``gateway.fields`` validated it (Core, no actor)."""
    info = terminal_info(conn, terminal_id)
    if info is None:
        raise NotFound(_("No such terminal"))
    done = _collection_of(conn, terminal_id, box_id)
    if done is not None:
        raise _already(terminal_id, box_id, done)
    if new_box_id == box_id or _collection_of(conn, terminal_id, new_box_id) is not None:
        raise InvalidNewBox(
            _("The new cash box id {box_id} is not new: box ids are never reused"),
            box_id=new_box_id,
        )
    d = deposit_table
    deposits = conn.execute(
        select(d.c.payment_id, d.c.notes).where(
            d.c.terminal_id == terminal_id, d.c.box_id == box_id
        )
    ).all()
    expected = canonical_notes(note for row in deposits for note in json.loads(row.notes))
    got = [n for n in canonical_notes(counted) if n["count"] > 0]
    expected_amount, counted_amount = notes_amount(expected), notes_amount(got)
    discrepancy = counted_amount - expected_amount
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "terminal_id": terminal_id,
        "org_path": info.org_path,
        "box_id": box_id,
        "new_box_id": new_box_id,
        "operator_id": operator_id,
        "collected_at": collected_at,
        "recorded_at": now,
        "business_date": business_date(now, get_settings().timezone),
        "expected": canonical(expected),
        "counted": canonical(got),
        "expected_amount": expected_amount,
        "counted_amount": counted_amount,
        "discrepancy": discrepancy,
        "deposits": len(deposits),
    }
    inserted = conn.execute(
        insert_or_nothing(conn, collection_table, index_elements=["terminal_id", "box_id"])
        .values(row)
        .returning(collection_table.c.id)
    ).scalar()
    if inserted is None:  # a concurrent collection of the same box committed first
        raise _already(terminal_id, box_id, _collection_of(conn, terminal_id, box_id) or "")
    insert_many(
        conn,
        collected_deposit_table,
        [{"collection_id": row["id"], "payment_id": dep.payment_id} for dep in deposits],
    )
    event = {
        "collection_id": row["id"],
        "terminal_id": terminal_id,
        "org_path": info.org_path,
        "box_id": box_id,
        "new_box_id": new_box_id,
        "expected_amount": expected_amount,
        "counted_amount": counted_amount,
        "discrepancy": discrepancy,
    }
    items = [
        Effect(
            "terminals.cash_collected",
            "terminal_cash_collection",
            row["id"],
            {k: v for k, v in event.items() if k != "org_path"} | {"operator_id": operator_id},
            CASH_COLLECTED_TOPIC,
            event,
            terminal_id,
        )
    ]
    if discrepancy:
        kind = ExceptionKind.surplus if discrepancy > 0 else ExceptionKind.shortage
        exception_id = new_id()
        conn.execute(
            exception_table.insert().values(
                id=exception_id,
                terminal_id=terminal_id,
                org_path=info.org_path,
                kind=kind.value,
                collection_id=row["id"],
                box_id=box_id,
                amount=abs(discrepancy),
                status=ExceptionStatus.open.value,
                created_at=now,
                resolved_at=None,
                resolved_by=None,
                note="",
            )
        )
        items.append(
            Effect(
                "terminals.cash_discrepancy",
                "terminal_finance_exception",
                exception_id,
                {
                    "terminal_id": terminal_id,
                    "box_id": box_id,
                    "kind": kind.value,
                    "amount": abs(discrepancy),
                    "collection_id": row["id"],
                },
                CASH_DISCREPANCY_TOPIC,
                event
                | {"exception_id": exception_id, "kind": kind.value, "amount": abs(discrepancy)},
                terminal_id,
            )
        )
    effects(conn, terminal_actor(info), items)
    return Collected(row["id"], expected, discrepancy)


# -- staff -----------------------------------------------------------------------------


def _limit(limit: int) -> None:
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )


def _notes(text: str) -> list[Note]:
    return [Note(**n) for n in json.loads(text)]


def _collection_out(row: RowMapping) -> CollectionOut:
    return CollectionOut(
        collection_id=row["id"],
        terminal_id=row["terminal_id"],
        box_id=row["box_id"],
        new_box_id=row["new_box_id"],
        operator_id=row["operator_id"],
        collected_at=row["collected_at"],
        recorded_at=row["recorded_at"],
        business_date=row["business_date"],
        expected=_notes(row["expected"]),
        counted=_notes(row["counted"]),
        expected_amount=row["expected_amount"],
        counted_amount=row["counted_amount"],
        discrepancy=row["discrepancy"],
        deposits=row["deposits"],
    )


def list_collections(
    uow: UnitOfWork,
    *,
    terminal_id: str | None = None,
    since: date | None = None,
    limit: int = 200,
) -> list[CollectionOut]:
    """Collections in the actor's subtree, newest first (``since``: business date)."""
    uow.actor.require("terminals.read")
    _limit(limit)
    c = collection_table
    query = select(c).where(uow.actor.scope(c.c.org_path))
    if terminal_id is not None:
        query = query.where(c.c.terminal_id == terminal_id)
    if since is not None:
        query = query.where(c.c.business_date >= since)
    query = query.order_by(c.c.recorded_at.desc(), c.c.id.desc()).limit(limit)
    return [_collection_out(row) for row in uow.connection.execute(query).mappings()]


def _exception_out(row: RowMapping) -> FinanceExceptionOut:
    return FinanceExceptionOut(
        exception_id=row["id"],
        kind=row["kind"],
        terminal_id=row["terminal_id"],
        box_id=row["box_id"],
        collection_id=row["collection_id"],
        amount=row["amount"],
        status=row["status"],
        created_at=row["created_at"],
        resolved_at=row["resolved_at"],
        resolved_by=row["resolved_by"],
        note=row["note"],
    )


def _late_deposits(
    uow: UnitOfWork, terminal_id: str | None, limit: int
) -> list[FinanceExceptionOut]:
    d, c, link = deposit_table, collection_table, collected_deposit_table
    included = exists().where(
        and_(link.c.collection_id == c.c.id, link.c.payment_id == d.c.payment_id)
    )
    query = (
        select(
            d.c.payment_id,
            d.c.terminal_id,
            d.c.box_id,
            d.c.serial,
            d.c.amount,
            d.c.created_at,
            c.c.id.label("collection_id"),
        )
        .select_from(d.join(c, and_(c.c.terminal_id == d.c.terminal_id, c.c.box_id == d.c.box_id)))
        .where(uow.actor.scope(c.c.org_path), ~included)
    )
    if terminal_id is not None:
        query = query.where(d.c.terminal_id == terminal_id)
    query = query.order_by(d.c.created_at.desc()).limit(limit)
    return [
        FinanceExceptionOut(
            exception_id=row.payment_id,
            kind=ExceptionKind.late_deposit.value,
            terminal_id=row.terminal_id,
            box_id=row.box_id,
            collection_id=row.collection_id,
            amount=row.amount,
            status=ExceptionStatus.open.value,
            created_at=row.created_at,
            payment_id=row.payment_id,
            serial=row.serial,
        )
        for row in uow.connection.execute(query)
    ]


def list_exceptions(
    uow: UnitOfWork,
    *,
    terminal_id: str | None = None,
    status: str | None = ExceptionStatus.open.value,
    limit: int = 200,
) -> list[FinanceExceptionOut]:
    """Finance exceptions of the cash boxes in the actor's subtree, newest first:
    surpluses and shortages (``status`` open / resolved / None for both) and, unless only
    resolved ones are asked for, deposits into already-collected boxes."""
    uow.actor.require("terminals.read")
    _limit(limit)
    if status is not None and status not in {s.value for s in ExceptionStatus}:
        raise ValidationError(
            _("Unknown exception status {status}"), code="invalid_exception_status", status=status
        )
    e = exception_table
    query = select(e).where(uow.actor.scope(e.c.org_path))
    if terminal_id is not None:
        query = query.where(e.c.terminal_id == terminal_id)
    if status is not None:
        query = query.where(e.c.status == status)
    query = query.order_by(e.c.created_at.desc(), e.c.id.desc()).limit(limit)
    found = [_exception_out(row) for row in uow.connection.execute(query).mappings()]
    if status != ExceptionStatus.resolved.value:
        found.extend(_late_deposits(uow, terminal_id, limit))
    found.sort(key=lambda x: x.created_at, reverse=True)
    return found[:limit]


def resolve_exception(uow: UnitOfWork, exception_id: str, note: str) -> FinanceExceptionOut:
    """Finance closes a surplus or shortage with an explanation (``payments.reconcile``,
    finance's permission: the money side is theirs). A late deposit is settled through
    payments, not here."""
    uow.actor.require("payments.reconcile")
    text = note_text(note)
    if not text:
        raise ValidationError(_("Say how the exception was resolved"), code="note_required")
    e = exception_table
    query = select(e).where(e.c.id == exception_id)
    if uow.dialect == "postgresql":
        query = query.with_for_update()
    row = (
        uow.connection.execute(query).mappings().first() if isinstance(exception_id, str) else None
    )
    if row is None or not uow.actor.sees(row["org_path"]):
        raise NotFound(_("No such finance exception"), code="exception_not_found")
    if row["status"] != ExceptionStatus.open.value:
        raise Conflict(
            _("The finance exception is already resolved"), code="exception_status_conflict"
        )
    now = utcnow()
    uow.connection.execute(
        update(e)
        .where(e.c.id == exception_id)
        .values(
            status=ExceptionStatus.resolved.value,
            resolved_at=now,
            resolved_by=uow.actor.id,
            note=text,
        )
    )
    uow_effects(
        uow,
        [
            Effect(
                "terminals.cash_exception_resolved",
                "terminal_finance_exception",
                exception_id,
                {
                    "terminal_id": row["terminal_id"],
                    "kind": row["kind"],
                    "amount": row["amount"],
                    "note": text,
                },
                EXCEPTION_RESOLVED_TOPIC,
                {
                    "exception_id": exception_id,
                    "terminal_id": row["terminal_id"],
                    "org_path": row["org_path"],
                    "kind": row["kind"],
                    "amount": row["amount"],
                },
                row["terminal_id"],
            )
        ],
    )
    changed = uow.connection.execute(select(e).where(e.c.id == exception_id)).mappings().one()
    return _exception_out(changed)
