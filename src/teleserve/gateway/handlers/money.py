"""REVERSAL (2009), RECEIPT (2010) and TXN_STATUS (2012): a kiosk asking about, or
taking back, a payment it made. The payments themselves (2001, 2002) are recorded by the
money writer (``gateway.money``).

A payment is named by its serial, and serials are per terminal, so a terminal only ever
reaches its own payments (PROTOCOL.md, "Money requests are always recorded").
"""

from __future__ import annotations

import json
from typing import Any

from teleserve.core.clock import utcnow
from teleserve.core.errors import Conflict, NotFound
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.gateway import errors
from teleserve.gateway.catalog import CARD_PAYMENT, CASH_PAYMENT, REVERSAL
from teleserve.gateway.checks import Accepted
from teleserve.gateway.dispatch import Handler, Result, read_only
from teleserve.gateway.errors import TspError
from teleserve.gateway.money_state import tsp_state
from teleserve.gateway.receipts import ReceiptFacts, SiteNames, receipt_lines
from teleserve.payments import service as payments
from teleserve.terminals import serials
from teleserve.terminals.models import RecordKind
from teleserve.terminals.service import site_of_terminal

PAYMENT_SERV_TYPES = frozenset({CASH_PAYMENT, CARD_PAYMENT})


def _not_found(serial: int) -> TspError:
    return TspError(errors.ORIGINAL_NOT_FOUND, {"original_serial": serial})


def _payment(uow: UnitOfWork, accepted: Accepted) -> payments.TerminalPayment:
    terminal_id = accepted.frame.header.terminal_id
    serial: int = accepted.body["original_serial"]
    found = payments.terminal_payments(uow.connection, terminal_id, [serial]).get(serial)
    if found is None:
        raise _not_found(serial)
    return found


def _recorded_answer(uow: UnitOfWork, terminal_id: str, serial: int) -> dict[str, Any]:
    record = serials.get_records(uow.connection, [(terminal_id, serial)]).get((terminal_id, serial))
    if record is None or record.is_marker:
        return {}
    answer: dict[str, Any] = json.loads(record.answer)
    return answer


def _balance_now(uow: UnitOfWork, payment: payments.TerminalPayment) -> int | None:
    if payment.billing_account_id is None:
        return None
    balances = payments.customer_balances(uow.connection, [payment.billing_account_id])
    return balances.get(payment.billing_account_id)


def txn_status(uow: UnitOfWork, accepted: Accepted) -> Result:
    """2012: the payment's state now. ``balance_after`` of a completed payment is the one
    its answer gave; a held payment staff settled later has none recorded, so it gets
    the account's balance now (docs/protocol-notes.md)."""
    payment = _payment(uow, accepted)
    body: dict[str, Any] = {"txn_id": payment.receipt_no, **tsp_state(payment)}
    if body["status"] == "completed":
        recorded = _recorded_answer(uow, payment_terminal(accepted), payment.serial)
        balance = recorded.get("balance_after")
        if balance is None:
            balance = _balance_now(uow, payment)
        if balance is not None:
            body["balance_after"] = balance
    return Result(body)


def payment_terminal(accepted: Accepted) -> str:
    return accepted.frame.header.terminal_id


class ReceiptHandler:
    """2010: the receipt again, with the payment's status now and a REPRINT line.
    Site names are cached per engine (one gateway process has one)."""

    read_only = True  # dispatch.read_only

    def __init__(self) -> None:
        self._sites: dict[int, SiteNames] = {}

    def __call__(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        payment = _payment(uow, accepted)
        settings = get_settings()
        terminal_id = payment_terminal(accepted)
        state = tsp_state(payment)
        recorded = _recorded_answer(uow, terminal_id, payment.serial)
        balance = recorded.get("balance_after") if state["status"] == "completed" else None
        site_id = site_of_terminal(uow.connection, terminal_id) or ""
        sites = self._sites.setdefault(id(uow.engine), SiteNames(uow.engine))
        facts = ReceiptFacts(
            place=sites.get(site_id, uow.actor.org_path),
            terminal_id=terminal_id,
            serial=payment.serial,
            at=payment.created_at,
            msisdn=payment.service_number or "",
            amount=payment.amount,
            currency=settings.currency,
            status=str(state["status"]),
            held_reason=payment.held_reason if state["status"] == "held" else None,
            txn_id=payment.receipt_no,
            balance_after=balance,
            reprint=True,
        )
        return Result({"receipt": {"lines": receipt_lines(facts, settings.timezone)}})


def reversal(uow: UnitOfWork, accepted: Accepted) -> Result:
    """2009. The original was never recorded → ``20008`` and a marker under its serial,
    so the payment, should it arrive late, is recorded held (``reversed_original``).
    The marker is written in the same transaction as this answer's own record: a
    ``20008`` answer is a business error, kept, and returned (not raised) so that the
    handler's savepoint keeps the marker."""
    h = accepted.frame.header
    serial: int = accepted.body["original_serial"]
    conn = uow.connection
    key = (h.terminal_id, serial)
    record = serials.get_records(conn, [key]).get(key)
    if record is None:
        marker = serials.SerialRecord(
            terminal_id=h.terminal_id,
            serial=serial,
            serv_type=REVERSAL,
            body_sha256="",
            err_number=errors.ORIGINAL_NOT_FOUND,
            answer="{}",
            created_at=utcnow(),
            kind=RecordKind.reversal_marker,
        )
        claim = serials.insert_or_get(conn, [marker])[0]
        if claim.inserted:
            error = _not_found(serial)
            return Result(error.body(), error.code)
        record = claim.record  # the payment landed meanwhile (another process)
    if record.is_marker or record.serv_type not in PAYMENT_SERV_TYPES:
        raise _not_found(serial)
    try:
        payment, reversal_no = payments.withdraw_terminal_payment(
            uow, h.terminal_id, serial, accepted.body["reason"]
        )
    except NotFound:
        raise _not_found(serial) from None
    except Conflict as conflict:
        raise TspError(
            errors.NOT_REVERSIBLE, {"original_serial": serial, "reason": conflict.code}
        ) from None
    body: dict[str, Any] = {"txn_id": reversal_no, **tsp_state(payment)}
    balance = _balance_now(uow, payment)
    if balance is not None:
        body["balance_after"] = balance
    return Result(body)


HANDLERS: dict[int, Handler] = {
    2009: reversal,
    2010: ReceiptHandler(),
    2012: read_only(txn_status),
}
