"""Use cases of the payments domain: the only code that records or moves money.

Recording (``record_payments``) is the one write path for money (DESIGN.md section 4): the
kiosk gateway, the counter, the REST API and the seed all call it with a batch of one or
many requests. It writes through SQLAlchemy Core in batched statements — a batch of 200
payments costs about the same dozen statements as a batch of one — and never the ORM.

Batch semantics
    Every request is validated before anything is written. An invalid request (bad
    amount, unknown channel, missing cash box...) gets an outcome with ``error`` set and
    writes nothing; the valid ones are recorded. A call with exactly one request raises
    that request's error instead (the counter, the REST API). A permission failure
    raises for the whole batch.

Idempotency (DESIGN.md section 5)
    Each request carries a client key, unique in ``payment_idempotency`` together with a
    SHA-256 of the canonical request body and the first answer. A retry with the same key
    and body returns the first answer (``replayed=True``) and writes nothing — not even an
    audit record; the same key with another body is refused (``Conflict``, code
    ``idempotency_conflict``). Both rules hold inside one batch: a later item repeating an
    earlier one is a replay, a later item with another body is refused. Keys are claimed
    with ``INSERT .. ON CONFLICT DO NOTHING RETURNING``: on PostgreSQL a concurrent
    transaction holding the same key makes the claim wait for its commit and then become a
    replay, never a duplicate payment nor an aborted batch.

Money received is never refused (DESIGN.md section 6)
    A valid payment whose billing account is unknown or closed, or that names only a
    service number, is recorded ``held`` (money moved to the ``suspense`` account) with a
    reason; staff settle it to an account (``settle_held``) or reverse it.

Statuses: ``completed``, ``pending`` (``PaymentRequest.pending``: a pending transfer that
``post_pending`` posts later), ``held`` and ``reversed``; the allowed transitions are the
table ``_TRANSITIONS``. Receipt numbers are ``R`` + business date + a database-wide serial
(``ledger.receipt_number``).

Permissions: ``payments.record`` (record, post), ``payments.reverse``,
``payments.settle``, ``payments.read`` (balances, payments, the ledger check, which is
operator-wide). Opening and closing the ledger mirror of a billing account is part of
managing that billing account, so it needs ``customers.write``; the customers domain calls
``ensure_customer_accounts`` / ``close_customer_account`` when it opens or closes one.
Payments are visible to actors whose subtree holds the payment's owner (the customer's
organisation; the receiving one while held) or the organisation that received the money.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    ScalarSelect,
    bindparam,
    func,
    or_,
    select,
    update,
)

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.clock import business_date, utcnow
from teleserve.core.db import (
    PerDialect,
    execute_many,
    in_parameter,
    insert_many,
    insert_or_nothing,
    insert_or_nothing_from_arrays,
)
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.query import FilterField, ListQuery, fetch_page, parse_datetime, where_clauses
from teleserve.core.reads import fetch
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.payments import ledger
from teleserve.payments.models import (
    AccountKind,
    AccountStatus,
    Channel,
    HeldReason,
    PaymentStatus,
    TransferKind,
    TransferStatus,
    account_table,
    idempotency_table,
    payment_table,
    transfer_table,
)
from teleserve.payments.schemas import (
    AccountBalance,
    CustomerAccountSpec,
    PaymentOutcome,
    PaymentRequest,
    PaymentView,
)

__all__ = [
    "AccountBalance",
    "CustomerAccountSpec",
    "PaymentOutcome",
    "PaymentRequest",
    "PaymentView",
    "TerminalPayment",
    "account_balance",
    "check_ledger",
    "close_customer_account",
    "customer_balances",
    "ensure_customer_accounts",
    "get_payment",
    "get_payment_by_key",
    "list_account_payments",
    "list_held_payments",
    "list_payments",
    "open_customer_account",
    "post_pending",
    "record_payments",
    "refund_held",
    "reverse_payment",
    "settle_held",
    "system_account_balance",
    "terminal_key",
    "terminal_payments",
    "withdraw_terminal_payment",
]

# A sanity bound, not a business limit: 1,000,000,000.00 yuan. It keeps any SUM of
# amounts far inside 64 bits.
MAX_AMOUNT = 100_000_000_000
MAX_KEY = 200
MAX_REASON = 200
_LIST_MAX = 200  # payments in one page of a list

# Column widths of the optional text fields of a request (models.Payment).
_TEXT_FIELDS: dict[str, int] = {
    "billing_account_id": 32,
    "service_number": 32,
    "source_id": 64,
    "terminal_id": 64,
    "terminal_serial": 64,
    "card_auth_code": 12,
    "card_rrn": 24,
    "external_ref": 64,
    "org_path": 255,
}

# External references each channel must carry (reconciliation matches on them).
_REQUIRED: dict[str, tuple[str, ...]] = {
    Channel.kiosk_cash: ("source_id", "terminal_id", "terminal_serial"),
    Channel.kiosk_card: ("terminal_id", "terminal_serial"),
    Channel.counter_cash: ("source_id",),
    Channel.web: (),
    Channel.api: (),
}

# The payment state machine: (status, action) -> new status. Checked only in ``_transition``.
_TRANSITIONS: dict[tuple[str, str], PaymentStatus] = {
    (PaymentStatus.pending, "post"): PaymentStatus.completed,
    (PaymentStatus.pending, "hold"): PaymentStatus.held,  # posted when its account closed
    (PaymentStatus.pending, "reverse"): PaymentStatus.reversed,
    (PaymentStatus.held, "settle"): PaymentStatus.completed,
    (PaymentStatus.held, "reverse"): PaymentStatus.reversed,
    (PaymentStatus.completed, "reverse"): PaymentStatus.reversed,
}
_REFUSALS = {
    "post": _("Payment {receipt_no} is {status}, so it cannot be posted"),
    "settle": _("Payment {receipt_no} is {status}, so it cannot be settled"),
}


def _transition(row: RowMapping, action: str) -> PaymentStatus:
    new = _TRANSITIONS.get((row["status"], action))
    if new is None:
        raise Conflict(
            _REFUSALS.get(action, _("Payment {receipt_no} is {status}, so it cannot be changed")),
            code="invalid_payment_state",
            receipt_no=row["receipt_no"],
            status=row["status"],
        )
    return new


# -- validation ------------------------------------------------------------------------

# Reasons a channel may give (the others are the ledger's own findings).
_HOLD_REASONS = frozenset(HeldReason) - {
    HeldReason.unknown_account,
    HeldReason.account_closed,
    HeldReason.unresolved_target,
}


def _check_text(name: str, value: object, limit: int) -> None:
    if value is not None and (
        not isinstance(value, str) or not value.strip() or len(value) > limit
    ):
        raise ValidationError(
            _("{field} must be text of 1 to {max} characters"),
            code="invalid_field",
            field=name,
            max=limit,
        )


def _require_text(name: str, value: object, limit: int) -> None:
    _check_text(name, "" if value is None else value, limit)


def _check_org_path(value: object) -> None:
    if not (isinstance(value, str) and value.startswith("/") and value.endswith("/")):
        raise ValidationError(
            _("An organisation path starts and ends with /: {org_path}"),
            code="invalid_org_path",
            org_path=value,
        )


def _check_amount(amount: object) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise ValidationError(_("The amount must be a whole number of fen"), code="invalid_amount")
    if amount <= 0:
        raise ValidationError(_("The amount must be positive"), code="invalid_amount")
    if amount > MAX_AMOUNT:
        raise ValidationError(
            _("The amount must not exceed {max} fen"), code="invalid_amount", max=MAX_AMOUNT
        )


def _check_currency(currency: object, expected: str) -> None:
    if currency != expected:
        raise ValidationError(
            _("Payments are accepted in {currency} only"),
            code="invalid_currency",
            currency=expected,
        )


def _validate(request: PaymentRequest, currency: str) -> None:
    """Refuse a request that can never be accepted as given (before anything is written)."""
    key = request.idempotency_key
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
        raise ValidationError(
            _("An idempotency key of 1 to {max} characters is required"),
            code="invalid_idempotency_key",
            max=MAX_KEY,
        )
    if not isinstance(request.channel, str) or request.channel not in _REQUIRED:
        raise ValidationError(
            _("Unknown payment channel {channel}"), code="invalid_channel", channel=request.channel
        )
    _check_amount(request.amount)
    _check_currency(request.currency, currency)
    for name, limit in _TEXT_FIELDS.items():
        _check_text(name, getattr(request, name), limit)
    if request.org_path is not None:
        _check_org_path(request.org_path)
    if request.billing_account_id is None and request.service_number is None:
        raise ValidationError(
            _("A payment needs a billing account or a service number"), code="missing_target"
        )
    for name in _REQUIRED[request.channel]:
        if getattr(request, name) is None:
            raise ValidationError(
                _("{field} is required for {channel} payments"),
                code="missing_field",
                field=name,
                channel=request.channel,
            )
    if not isinstance(request.pending, bool):
        raise ValidationError(
            _("{field} must be true or false"), code="invalid_field", field="pending"
        )
    if request.hold_reason is not None and request.hold_reason not in _HOLD_REASONS:
        raise ValidationError(
            _("Unknown reason to hold a payment: {reason}"),
            code="invalid_hold_reason",
            reason=request.hold_reason,
        )


def _idempotency_conflict(key: str) -> Conflict:
    return Conflict(
        _("The idempotency key {key} was already used for another request"),
        code="idempotency_conflict",
        key=key,
    )


# -- recording -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Stored:
    body_hash: str
    response: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Plan:
    """A fresh request with everything decided before the batch is written."""

    index: int
    digest: str
    request: PaymentRequest
    outcome: PaymentOutcome
    account: ledger.CustomerAccount | None
    source_account_id: str
    received_org_path: str


def record_payments(uow: UnitOfWork, requests: Sequence[PaymentRequest]) -> list[PaymentOutcome]:
    """Record a batch of payments; one outcome per request, in order (module docstring)."""
    uow.actor.require("payments.record")
    currency = get_settings().currency
    outcomes: list[PaymentOutcome | None] = [None] * len(requests)
    by_key: dict[str, list[tuple[int, str]]] = {}  # key -> [(index, body hash)] in order
    for index, request in enumerate(requests):
        key = request.idempotency_key if isinstance(request.idempotency_key, str) else ""
        try:
            _validate(request, currency)
        except ValidationError as error:
            outcomes[index] = PaymentOutcome.failed(key, error)
            continue
        by_key.setdefault(key, []).append((index, request.body_hash()))

    followers: list[tuple[int, int]] = []  # (index, index of the same request earlier)
    if by_key:
        stored = _stored_answers(uow.connection, by_key)
        fresh: list[tuple[int, str]] = []
        for key, items in by_key.items():
            if key in stored:  # every item is a retry of the stored first request
                for index, digest in items:
                    outcomes[index] = _replay(key, digest, stored[key])
                continue
            # A new key: its first item is recorded, later ones repeat it or conflict.
            (first, first_digest), *later = items
            fresh.append((first, first_digest))
            for index, digest in later:
                if digest == first_digest:
                    followers.append((index, first))
                else:
                    outcomes[index] = PaymentOutcome.failed(key, _idempotency_conflict(key))
        if fresh:
            for index, outcome in _record_fresh(uow, requests, fresh).items():
                outcomes[index] = outcome

    for index, leader in followers:
        first_outcome = outcomes[leader]
        assert first_outcome is not None
        outcomes[index] = (
            replace(first_outcome, replayed=True) if first_outcome.ok else first_outcome
        )

    result = [outcome for outcome in outcomes if outcome is not None]
    assert len(result) == len(requests)
    if len(result) == 1 and result[0].error is not None:
        raise result[0].error
    return result


# Lookups by a batch's keys: ``= ANY(array)`` on PostgreSQL (``db.in_parameter``): the
# statement's text stays the same whatever the number of keys, so psycopg converts it
# once; an expanded ``IN`` list was parsed again on every call (~4 ms for 200 keys).
_STORED_ANSWERS = PerDialect(
    lambda dialect: select(
        idempotency_table.c.key, idempotency_table.c.body_hash, idempotency_table.c.response
    ).where(in_parameter(idempotency_table.c.key, "keys", dialect))
)
_OWNERS = PerDialect(
    lambda dialect: select(idempotency_table.c.key, idempotency_table.c.payment_id).where(
        in_parameter(idempotency_table.c.key, "keys", dialect)
    )
)


def _stored_answers(conn: Connection, keys: Collection[str]) -> dict[str, _Stored]:
    found: dict[str, _Stored] = {}
    for part in ledger.chunks(sorted(keys)):
        rows = fetch(conn, _STORED_ANSWERS(conn), {"keys": list(part)})
        found.update({row.key: _Stored(row.body_hash, row.response) for row in rows})
    return found


def _replay(key: str, digest: str, stored: _Stored) -> PaymentOutcome:
    if stored.body_hash != digest:
        return PaymentOutcome.failed(key, _idempotency_conflict(key))
    return PaymentOutcome.from_answer(key, stored.response)


def _source_code(request: PaymentRequest) -> str:
    """The system account the money came in through."""
    if request.channel == Channel.kiosk_cash:
        return f"cash_box:{request.source_id}"
    if request.channel == Channel.counter_cash:
        return f"cash_desk:{request.source_id}"
    return f"clearing:{'card' if request.channel == Channel.kiosk_card else request.channel}"


def _record_fresh(
    uow: UnitOfWork, requests: Sequence[PaymentRequest], fresh: Sequence[tuple[int, str]]
) -> dict[int, PaymentOutcome]:
    conn = uow.connection
    settings = get_settings()
    now = utcnow()
    day = business_date(now, settings.timezone)
    system_codes: dict[str, str] = {}  # code -> owning org path (first seen)
    targets: set[str] = set()
    for index, _digest in fresh:
        request = requests[index]
        source = _source_code(request)
        # A cash box or desk belongs to the hall that uses it; clearing accounts do not.
        owner = (request.org_path or uow.actor.org_path) if source.startswith("cash_") else "/"
        system_codes.setdefault(source, owner)
        if request.billing_account_id is not None:
            targets.add(request.billing_account_id)
    accounts, existing = ledger.load_accounts(conn, targets, [*system_codes, ledger.SUSPENSE])
    serials = ledger.receipt_serials(conn, len(fresh))
    plans: list[_Plan] = []
    for (index, digest), serial in zip(fresh, serials, strict=True):
        request = requests[index]
        received_org = request.org_path or uow.actor.org_path
        source = _source_code(request)
        account = accounts.get(request.billing_account_id or "")
        reason = _held_reason(request, account)
        if reason is not None:
            status = PaymentStatus.held
            system_codes.setdefault(ledger.SUSPENSE, "/")
        else:
            status = PaymentStatus.pending if request.pending else PaymentStatus.completed
        outcome = PaymentOutcome(
            idempotency_key=request.idempotency_key,
            payment_id=new_id(),
            receipt_no=ledger.receipt_number(day, serial),
            status=status.value,
            held_reason=reason,
            amount=request.amount,
            currency=request.currency,
            billing_account_id=request.billing_account_id,
            business_date=day.isoformat(),
            created_at=now.isoformat(),
        )
        plans.append(
            _Plan(
                index,
                digest,
                request,
                outcome,
                account if reason is None else None,
                ledger.account_id_for(source),
                received_org,
            )
        )

    results: dict[int, PaymentOutcome] = {}
    claimed = _claim_keys(conn, plans, now)
    if len(claimed) < len(plans):
        # Another transaction committed these keys while we prepared: answer as a retry.
        # (Their receipt serials stay unused: receipt numbers may have gaps.)
        lost = [plan for plan in plans if plan.request.idempotency_key not in claimed]
        stored = _stored_answers(conn, [plan.request.idempotency_key for plan in lost])
        for plan in lost:
            key = plan.request.idempotency_key
            results[plan.index] = _replay(key, plan.digest, stored[key])
        plans = [plan for plan in plans if plan.request.idempotency_key in claimed]
    if not plans:
        return results

    missing = {code: owner for code, owner in system_codes.items() if code not in existing}
    if missing:
        ledger.ensure_system_accounts(conn, missing, currency=settings.currency, now=now)
    insert_many(conn, payment_table, [_payment_row(uow.actor, plan, now, day) for plan in plans])
    transfers = [_first_transfer(plan) for plan in plans]
    maintained = {plan.account.id for plan in plans if plan.account is not None}
    ledger.write_transfers(conn, transfers, now=now, day=day, maintained=maintained)
    for plan in plans:
        _announce_recorded(uow, plan)
        results[plan.index] = plan.outcome
    return results


def _held_reason(request: PaymentRequest, account: ledger.CustomerAccount | None) -> str | None:
    if request.hold_reason is not None:
        return request.hold_reason
    if request.billing_account_id is None:
        return HeldReason.unresolved_target.value
    if account is None:
        return HeldReason.unknown_account.value
    if not account.is_open:
        return HeldReason.account_closed.value
    return None


def _claim_keys(conn: Connection, plans: Sequence[_Plan], now: datetime) -> set[str]:
    """Insert the idempotency rows; returns the keys this transaction now owns."""
    t = idempotency_table
    rows = sorted(
        (
            {
                "key": plan.request.idempotency_key,
                "body_hash": plan.digest,
                "payment_id": plan.outcome.payment_id,
                "response": plan.outcome.answer(),
                "created_at": now,
            }
            for plan in plans
        ),
        key=lambda row: str(row["key"]),  # one lock order for concurrent batches
    )
    if conn.dialect.name == "sqlite":
        # One executemany, no RETURNING. This transaction has held the write lock since
        # its first statement, in which it found none of these keys: it claims them all.
        # Should the count ever disagree, the rows carrying our payment ids tell.
        if execute_many(conn, insert_or_nothing(conn, t), rows) == len(rows):
            return {str(row["key"]) for row in rows}
        ours = {str(row["payment_id"]) for row in rows}
        keys = [row["key"] for row in rows]
        return {
            str(row.key)
            for part in ledger.chunks(keys)
            for row in conn.execute(_OWNERS(conn), {"keys": list(part)})
            if row.payment_id in ours
        }
    # PostgreSQL: the whole batch in one statement from arrays (a multi-row VALUES list
    # was this path's costliest statement there: db.insert_or_nothing_from_arrays).
    claimed = insert_or_nothing_from_arrays(conn, t, rows, returning=("key",))
    return {str(row.key) for row in claimed}


def _payment_row(actor: Actor, plan: _Plan, now: datetime, day: date) -> dict[str, Any]:
    request, outcome, account = plan.request, plan.outcome, plan.account
    return {
        "id": outcome.payment_id,
        "receipt_no": outcome.receipt_no,
        "idempotency_key": request.idempotency_key,
        "channel": request.channel,
        "amount": request.amount,
        "currency": request.currency,
        "status": outcome.status,
        "held_reason": outcome.held_reason,
        "billing_account_id": request.billing_account_id,
        "service_number": request.service_number,
        "ledger_account_id": account.id if account is not None else None,
        "source_account_id": plan.source_account_id,
        "customer_id": account.customer_id if account is not None else None,
        "org_path": account.org_path if account is not None else plan.received_org_path,
        "received_org_path": plan.received_org_path,
        "source_id": request.source_id,
        "terminal_id": request.terminal_id,
        "terminal_serial": request.terminal_serial,
        "card_auth_code": request.card_auth_code,
        "card_rrn": request.card_rrn,
        "external_ref": request.external_ref,
        "recorded_by_kind": str(actor.kind),
        "recorded_by": actor.id,
        "created_at": now,
        "business_date": day,
        "completed_at": now if outcome.status == PaymentStatus.completed else None,
        "settled_at": None,
        "reversed_at": None,
        "reversal_reason": None,
    }


def _first_transfer(plan: _Plan) -> ledger.Transfer:
    outcome = plan.outcome
    assert outcome.payment_id is not None and outcome.amount is not None
    if plan.account is None:
        return ledger.Transfer(
            new_id(),
            TransferKind.hold,
            plan.source_account_id,
            ledger.account_id_for(ledger.SUSPENSE),
            outcome.amount,
            payment_id=outcome.payment_id,
        )
    return ledger.Transfer(
        new_id(),
        TransferKind.payment,
        plan.source_account_id,
        plan.account.id,
        outcome.amount,
        pending=outcome.status == PaymentStatus.pending,
        payment_id=outcome.payment_id,
    )


def _announce_recorded(uow: UnitOfWork, plan: _Plan) -> None:
    request, outcome = plan.request, plan.outcome
    assert outcome.payment_id is not None
    uow.audit(
        "payment.recorded",
        "payment",
        outcome.payment_id,
        {
            "receipt_no": outcome.receipt_no,
            "channel": request.channel,
            "amount": request.amount,
            "currency": request.currency,
            "status": outcome.status,
            "held_reason": outcome.held_reason,
            "billing_account_id": request.billing_account_id,
            "source_id": request.source_id,
            "terminal_id": request.terminal_id,
            "terminal_serial": request.terminal_serial,
        },
    )
    uow.emit(
        "payments.recorded",
        {
            "payment_id": outcome.payment_id,
            "receipt_no": outcome.receipt_no,
            "status": outcome.status,
            "held_reason": outcome.held_reason,
            "amount": request.amount,
            "currency": request.currency,
            "channel": request.channel,
            "billing_account_id": request.billing_account_id,
            "customer_id": plan.account.customer_id if plan.account is not None else None,
            "service_number": request.service_number,
            "business_date": outcome.business_date,
        },
        key=request.billing_account_id or outcome.payment_id,
    )


# -- changing a payment ----------------------------------------------------------------


def _visible(actor: Actor, row: RowMapping) -> bool:
    return actor.sees(row["org_path"]) or actor.sees(row["received_org_path"])


def _locked_payment(uow: UnitOfWork, payment_id: str) -> RowMapping:
    """The payment row, locked until commit (PostgreSQL; SQLite has one writer)."""
    t = payment_table
    row = None
    if isinstance(payment_id, str):
        row = (
            uow.connection.execute(select(t).where(t.c.id == payment_id).with_for_update())
            .mappings()
            .first()
        )
    if row is None or not _visible(uow.actor, row):
        raise NotFound(_("No such payment"), code="payment_not_found")
    return row


def _reread(uow: UnitOfWork, payment_id: str) -> PaymentView:
    t = payment_table
    row = uow.connection.execute(select(t).where(t.c.id == payment_id)).mappings().one()
    return _view(row)


def _set_payment(uow: UnitOfWork, payment_id: str, **values: Any) -> None:
    uow.connection.execute(
        update(payment_table).where(payment_table.c.id == payment_id).values(**values)
    )


def _event(row: RowMapping, **extra: Any) -> dict[str, Any]:
    return {
        "payment_id": row["id"],
        "receipt_no": row["receipt_no"],
        "amount": row["amount"],
        "currency": row["currency"],
        "channel": row["channel"],
        "billing_account_id": row["billing_account_id"],
        "customer_id": row["customer_id"],
        **extra,
    }


def _pending_transfer_id(conn: Connection, payment_id: str) -> str:
    t = transfer_table
    return str(
        conn.execute(
            select(t.c.id).where(
                t.c.payment_id == payment_id, t.c.status == TransferStatus.pending.value
            )
        ).scalar_one()
    )


def _last_posted_into(conn: Connection, payment_id: str, account_id: str) -> str:
    t = transfer_table
    return str(
        conn.execute(
            select(t.c.id)
            .where(
                t.c.payment_id == payment_id,
                t.c.credit_account_id == account_id,
                t.c.status == TransferStatus.posted.value,
            )
            .order_by(t.c.created_at.desc(), t.c.id.desc())
            .limit(1)
        ).scalar_one()
    )


def reverse_payment(uow: UnitOfWork, payment_id: str, reason: str) -> PaymentView:
    """Reverse (冲正) a payment: void its pending transfer, or post a compensating transfer
    from wherever the money sits back to its source. Reversing a reversed payment changes
    nothing. A reversal may leave a prepaid balance negative (the money was spent): that
    is arrears for billing to collect, not a reason to keep wrong money."""
    uow.actor.require("payments.reverse")
    _require_text("reason", reason, MAX_REASON)
    row = _locked_payment(uow, payment_id)
    if row["status"] == PaymentStatus.reversed:
        return _view(row)
    _reverse_row(uow, row, reason)
    return _reread(uow, row["id"])


def _reverse_row(
    uow: UnitOfWork, row: RowMapping, reason: str, reference: str | None = None
) -> None:
    new_status = _transition(row, "reverse")
    conn = uow.connection
    now = utcnow()
    day = business_date(now, get_settings().timezone)
    customer_account = row["ledger_account_id"]
    maintained = {customer_account} if customer_account else set()
    if row["status"] == PaymentStatus.pending:
        ledger.resolve_pending(
            conn,
            _pending_transfer_id(conn, row["id"]),
            post=False,
            now=now,
            day=day,
            maintained=maintained,
        )
    else:
        holder = (
            customer_account
            if row["status"] == PaymentStatus.completed
            else ledger.account_id_for(ledger.SUSPENSE)
        )
        compensation = ledger.Transfer(
            new_id(),
            TransferKind.reversal,
            holder,
            row["source_account_id"],
            row["amount"],
            payment_id=row["id"],
            reverses_id=_last_posted_into(conn, row["id"], holder),
        )
        ledger.write_transfers(conn, [compensation], now=now, day=day, maintained=maintained)
    _set_payment(uow, row["id"], status=new_status.value, reversed_at=now, reversal_reason=reason)
    _announce_reversal(uow, row, reason, new_status.value, reference)


def _announce_reversal(
    uow: UnitOfWork, row: RowMapping, reason: str, new_status: str, reference: str | None
) -> None:
    detail = {
        "receipt_no": row["receipt_no"],
        "from_status": row["status"],
        "to_status": new_status,
        "reason": reason,
        "amount": row["amount"],
    }
    if reference is not None:
        detail["reversal_no"] = reference
    uow.audit("payment.reversed", "payment", row["id"], detail)
    uow.emit(
        "payments.reversed",
        _event(row, from_status=row["status"], status=new_status, reason=reason),
        key=row["billing_account_id"] or row["id"],
    )


def withdraw_terminal_payment(
    uow: UnitOfWork, terminal_id: str, serial: int, reason: str
) -> tuple[TerminalPayment, str]:
    """A kiosk's REVERSAL (2009) of its own payment, on the business date the payment
    was received (PROTOCOL.md, "Money requests are always recorded"):

    - a card payment, completed or pending, is reversed: its credit goes back to card
      clearing (the balance may go below zero) and the terminal voids the authorisation;
    - a cash payment cannot give its notes back: a completed one's credit moves to
      suspense, a pending one's transfer is voided and the money held; either becomes
      ``held`` with ``held_reason`` ``reversed``, for a refund at a counter;
    - a payment already ``held`` stays held (nothing was credited); the reversal is noted.

    Only that terminal may withdraw it (serials are per terminal). ``NotFound``: no
    payment under that serial. ``Conflict`` ``already_reversed`` / ``reversal_day_passed``:
    it cannot be reversed. Returns the payment now and the reversal's own reference (a
    receipt number, in the audit record too)."""
    actor = uow.actor
    if actor.kind is not ActorKind.terminal or actor.id != terminal_id:
        raise PermissionDenied(_("Only the terminal that took a payment can reverse it"))
    _require_text("reason", reason, MAX_REASON)
    t = payment_table
    conn = uow.connection
    row = (
        conn.execute(
            select(t)
            .where(t.c.id == _payment_id_of_key(terminal_key(terminal_id, serial)))
            .with_for_update()
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(_("No such payment"), code="payment_not_found")
    if row["reversed_at"] is not None:
        raise Conflict(
            _("Payment {receipt_no} was already reversed"),
            code="already_reversed",
            receipt_no=row["receipt_no"],
        )
    now = utcnow()
    day = business_date(now, get_settings().timezone)
    if row["business_date"] != day:
        raise Conflict(
            _("Payment {receipt_no} can only be reversed on its business date {day}"),
            code="reversal_day_passed",
            receipt_no=row["receipt_no"],
            day=row["business_date"].isoformat(),
        )
    reference = ledger.receipt_number(day, ledger.receipt_serials(conn, 1)[0])
    if row["status"] == PaymentStatus.held:
        _set_payment(uow, row["id"], reversed_at=now, reversal_reason=reason)
        _announce_reversal(uow, row, reason, row["status"], reference)
    elif row["channel"] == Channel.kiosk_card:
        _reverse_row(uow, row, reason, reference)
    else:
        _hold_reversed_cash(uow, row, reason, now, day, reference)
    found = terminal_payments(conn, terminal_id, [serial])
    return found[serial], reference


def _hold_reversed_cash(
    uow: UnitOfWork, row: RowMapping, reason: str, now: datetime, day: date, reference: str
) -> None:
    conn = uow.connection
    customer_account = row["ledger_account_id"]
    maintained = {customer_account} if customer_account else set()
    if row["status"] == PaymentStatus.pending:
        pending_id = _pending_transfer_id(conn, row["id"])
        _pending_to_suspense(conn, row, pending_id, now, day, maintained)
    else:
        ledger.ensure_system_accounts(
            conn, {ledger.SUSPENSE: "/"}, currency=row["currency"], now=now
        )
        move = ledger.Transfer(
            new_id(),
            TransferKind.hold,
            customer_account,
            ledger.account_id_for(ledger.SUSPENSE),
            row["amount"],
            payment_id=row["id"],
            reverses_id=_last_posted_into(conn, row["id"], customer_account),
        )
        ledger.write_transfers(conn, [move], now=now, day=day, maintained=maintained)
    _set_payment(
        uow,
        row["id"],
        status=PaymentStatus.held.value,
        held_reason=HeldReason.reversed.value,
        ledger_account_id=None,
        completed_at=None,
        reversed_at=now,
        reversal_reason=reason,
    )
    _announce_reversal(uow, row, reason, PaymentStatus.held.value, reference)


def _pending_to_suspense(
    conn: Connection,
    row: RowMapping,
    pending_transfer_id: str,
    now: datetime,
    day: date,
    maintained: Collection[str],
) -> None:
    """Void a payment's pending transfer and hold its money instead: source → suspense
    (a pending payment whose account closed, or a pending cash payment reversed)."""
    ledger.resolve_pending(
        conn, pending_transfer_id, post=False, now=now, day=day, maintained=maintained
    )
    ledger.ensure_system_accounts(conn, {ledger.SUSPENSE: "/"}, currency=row["currency"], now=now)
    hold = ledger.Transfer(
        new_id(),
        TransferKind.hold,
        row["source_account_id"],
        ledger.account_id_for(ledger.SUSPENSE),
        row["amount"],
        payment_id=row["id"],
    )
    ledger.write_transfers(conn, [hold], now=now, day=day, maintained=set())


def post_pending(uow: UnitOfWork, payment_id: str) -> PaymentView:
    """Post a pending payment (the billing side confirmed it). If its account was closed
    meanwhile the money is held instead. Posting a completed payment changes nothing."""
    uow.actor.require("payments.record")
    row = _locked_payment(uow, payment_id)
    if row["status"] == PaymentStatus.completed:
        return _view(row)
    _transition(row, "post")
    conn = uow.connection
    now = utcnow()
    day = business_date(now, get_settings().timezone)
    account_id = row["ledger_account_id"]
    status = conn.execute(
        select(account_table.c.status).where(account_table.c.id == account_id)
    ).scalar_one()
    transfer_id = _pending_transfer_id(conn, row["id"])
    if status == AccountStatus.open:
        new_status = _transition(row, "post")
        ledger.resolve_pending(
            conn, transfer_id, post=True, now=now, day=day, maintained={account_id}
        )
        _set_payment(uow, row["id"], status=new_status.value, completed_at=now)
        action, topic = "payment.posted", "payments.posted"
        detail: dict[str, Any] = {}
    else:
        new_status = _transition(row, "hold")
        _pending_to_suspense(conn, row, transfer_id, now, day, {account_id})
        reason = HeldReason.account_closed.value
        _set_payment(
            uow,
            row["id"],
            status=new_status.value,
            held_reason=reason,
            ledger_account_id=None,
            customer_id=None,
        )
        action, topic = "payment.held", "payments.held"
        detail = {"held_reason": reason}
    uow.audit(action, "payment", row["id"], {"receipt_no": row["receipt_no"], **detail})
    uow.emit(
        topic,
        _event(row, status=new_status.value, **detail),
        key=row["billing_account_id"] or row["id"],
    )
    return _reread(uow, row["id"])


def settle_held(uow: UnitOfWork, payment_id: str, billing_account_id: str) -> PaymentView:
    """Credit held money to a billing account (挂账销账). Settling a payment again to the
    same account changes nothing; to another account is refused."""
    uow.actor.require("payments.settle")
    _require_text("billing_account_id", billing_account_id, _TEXT_FIELDS["billing_account_id"])
    row = _locked_payment(uow, payment_id)
    conn = uow.connection
    target = ledger.customer_accounts(conn, [billing_account_id]).get(billing_account_id)
    if target is None or not uow.actor.sees(target.org_path):
        raise NotFound(_("No such billing account"), code="billing_account_not_found")
    if row["status"] == PaymentStatus.completed and row["settled_at"] is not None:
        if row["ledger_account_id"] == target.id:
            return _view(row)
        raise Conflict(
            _("Payment {receipt_no} was settled to another billing account"),
            code="already_settled",
            receipt_no=row["receipt_no"],
        )
    new_status = _transition(row, "settle")
    if not target.is_open:
        raise Conflict(
            _("Billing account {billing_account_id} is closed"),
            code="account_closed",
            billing_account_id=billing_account_id,
        )
    now = utcnow()
    day = business_date(now, get_settings().timezone)
    settlement = ledger.Transfer(
        new_id(),
        TransferKind.settlement,
        ledger.account_id_for(ledger.SUSPENSE),
        target.id,
        row["amount"],
        payment_id=row["id"],
    )
    ledger.write_transfers(conn, [settlement], now=now, day=day, maintained={target.id})
    _set_payment(
        uow,
        row["id"],
        status=new_status.value,
        billing_account_id=billing_account_id,
        ledger_account_id=target.id,
        customer_id=target.customer_id,
        org_path=target.org_path,
        settled_at=now,
        completed_at=now,
    )
    uow.audit(
        "payment.settled",
        "payment",
        row["id"],
        {
            "receipt_no": row["receipt_no"],
            "billing_account_id": billing_account_id,
            "held_reason": row["held_reason"],
            "amount": row["amount"],
        },
    )
    uow.emit(
        "payments.settled",
        {
            **_event(row),
            "billing_account_id": billing_account_id,
            "customer_id": target.customer_id,
        },
        key=billing_account_id,
    )
    return _reread(uow, row["id"])


# -- reading ---------------------------------------------------------------------------


def _view(row: RowMapping) -> PaymentView:
    return PaymentView(**{f.name: row[f.name] for f in fields(PaymentView)})


def get_payment(uow: UnitOfWork, payment_id: str) -> PaymentView:
    """A payment by its id, if the actor may see it."""
    valid = isinstance(payment_id, str)
    return _payment_where(uow, payment_table.c.id == payment_id if valid else None)


def get_payment_by_key(uow: UnitOfWork, idempotency_key: str) -> PaymentView:
    """The payment recorded under a client key (TSP TXN_STATUS: how did it end?)."""
    valid = isinstance(idempotency_key, str)
    return _payment_where(
        uow, payment_table.c.id == _payment_id_of_key(idempotency_key) if valid else None
    )


def _payment_id_of_key(key: str) -> ScalarSelect[Any]:
    """The id of the payment recorded under ``key``, as a subquery: the key's one index
    is ``payment_idempotency``'s primary key (``models.Payment``)."""
    i = idempotency_table
    return select(i.c.payment_id).where(i.c.key == key).scalar_subquery()


def _payment_where(uow: UnitOfWork, condition: ColumnElement[bool] | None) -> PaymentView:
    """The one payment meeting ``condition`` (on a unique column; ``None`` for a value
    of the wrong type); absent and out-of-scope payments are the same NotFound."""
    uow.actor.require("payments.read")
    row = None
    if condition is not None:
        row = uow.connection.execute(select(payment_table).where(condition)).mappings().first()
    if row is None or not _visible(uow.actor, row):
        raise NotFound(_("No such payment"), code="payment_not_found")
    return _view(row)


def list_account_payments(
    uow: UnitOfWork, billing_account_id: str, *, limit: int = 20, offset: int = 0
) -> list[PaymentView]:
    """Payments to one billing account that the actor may see, newest first (one indexed
    query, ``ix_payment_billing_account_id``). An account without payments, or outside
    the actor's subtree, gives an empty list."""
    uow.actor.require("payments.read")
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )
    if offset < 0:
        raise ValidationError(_("offset must be zero or more"), code="invalid_offset")
    t = payment_table
    actor = uow.actor
    query = (
        select(t)
        .where(
            t.c.billing_account_id == billing_account_id,
            or_(actor.scope(t.c.org_path), actor.scope(t.c.received_org_path)),
        )
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return [_view(row) for row in uow.connection.execute(query).mappings()]


# What a list of payments filters on (``core.query``): the edges (TMF676, the console)
# map their own attribute names to these.
PAYMENT_FILTERS: dict[str, FilterField] = {
    "status": FilterField(payment_table.c.status),
    "channel": FilterField(payment_table.c.channel),
    "billing_account_id": FilterField(payment_table.c.billing_account_id),
    "receipt_no": FilterField(payment_table.c.receipt_no),
    "external_ref": FilterField(payment_table.c.external_ref),
    "created_at": FilterField(payment_table.c.created_at, parse_datetime, ordered=True),
}


def list_payments(uow: UnitOfWork, query: ListQuery) -> tuple[list[PaymentView], int]:
    """Payments the actor may see that match ``query`` (``PAYMENT_FILTERS``), newest
    first, and how many match in all. Filtered in SQL before paging, so the total is true
    and another organisation's payments are never counted."""
    uow.actor.require("payments.read")
    t = payment_table
    actor = uow.actor
    select_ = select(t).where(
        or_(actor.scope(t.c.org_path), actor.scope(t.c.received_org_path)),
        *where_clauses(query.conditions, PAYMENT_FILTERS),
    )
    rows, total = fetch_page(
        uow.session, select_, query, order_by=[t.c.created_at.desc(), t.c.id.desc()]
    )
    return [_view(row._mapping) for row in rows], total


def account_balance(uow: UnitOfWork, billing_account_id: str) -> AccountBalance:
    """The figures of a billing account's ledger account (one row read)."""
    uow.actor.require("payments.read")
    t = account_table
    row = None
    if isinstance(billing_account_id, str):
        row = (
            uow.connection.execute(select(t).where(t.c.billing_account_id == billing_account_id))
            .mappings()
            .first()
        )
    if row is None or not uow.actor.sees(row["org_path"]):
        raise NotFound(_("No such billing account"), code="billing_account_not_found")
    return ledger.figures(uow.connection, row)


def system_account_balance(uow: UnitOfWork, code: str) -> AccountBalance:
    """The figures of a system account (``cash_box:<id>``, ``suspense``...), rolled up from
    its entries. A valid code that no payment has used yet has zero figures."""
    uow.actor.require("payments.read")
    try:
        side = ledger.system_side(code) if isinstance(code, str) else None
    except ValueError:
        side = None
    if side is None:
        raise ValidationError(
            _("Not a system account code: {account}"), code="invalid_account_code", account=code
        )
    t = account_table
    row = uow.connection.execute(select(t).where(t.c.code == code)).mappings().first()
    if row is None:
        account_id = ledger.account_id_for(code)
        return AccountBalance(
            account_id,
            code,
            AccountKind.system.value,
            side.value,
            AccountStatus.open.value,
            get_settings().currency,
            0,
            0,
            0,
            0,
        )
    if not uow.actor.sees(row["org_path"]):
        raise NotFound(_("No such ledger account"), code="ledger_account_not_found")
    return ledger.figures(uow.connection, row)


_BALANCES = PerDialect(
    lambda dialect: select(account_table.c.billing_account_id, account_table.c.balance).where(
        in_parameter(account_table.c.billing_account_id, "ids", dialect)
    )
)


def customer_balances(conn: Connection, billing_account_ids: Collection[str]) -> dict[str, int]:
    """Posted balances (fen) of these billing accounts' ledger accounts; absent: none.

    Core, no actor: for the kiosk gateway (``balance_after``, ACCOUNT_SUMMARY) once the
    terminal and, where needed, the customer are authenticated."""
    found: dict[str, int] = {}
    for part in ledger.chunks(sorted(set(billing_account_ids))):
        for row in fetch(conn, _BALANCES(conn), {"ids": list(part)}):
            found[row.billing_account_id] = int(row.balance)
    return found


@dataclass(frozen=True, slots=True)
class TerminalPayment:
    """A kiosk payment as it stands now, by the terminal serial that recorded it."""

    payment_id: str
    serial: int
    channel: str
    amount: int
    status: str
    held_reason: str | None
    billing_account_id: str | None
    business_date: date
    receipt_no: str
    service_number: str | None
    created_at: datetime
    reversed_at: datetime | None


_BY_TERMINAL_SERIAL = select(
    payment_table.c.id,
    payment_table.c.terminal_serial,
    payment_table.c.channel,
    payment_table.c.amount,
    payment_table.c.status,
    payment_table.c.held_reason,
    payment_table.c.billing_account_id,
    payment_table.c.business_date,
    payment_table.c.receipt_no,
    payment_table.c.service_number,
    payment_table.c.created_at,
    payment_table.c.reversed_at,
).where(
    payment_table.c.id.in_(
        select(idempotency_table.c.payment_id).where(
            idempotency_table.c.key.in_(bindparam("keys", expanding=True))
        )
    )
)


def terminal_key(terminal_id: str, serial: int) -> str:
    """The idempotency key of a kiosk payment: a TSP/1 serial is unique per terminal."""
    return f"tsp:{terminal_id}:{serial}"


def terminal_payments(
    conn: Connection, terminal_id: str, serials: Collection[int]
) -> dict[int, TerminalPayment]:
    """The payments ``terminal_id`` recorded under these serials (TXN_STATUS, RECEIPT,
    REVERSAL, JOURNAL_UPLOAD). Core, no actor: the gateway calls it for an authenticated
    terminal, which only ever sees its own payments."""
    found: dict[int, TerminalPayment] = {}
    keys = sorted({terminal_key(terminal_id, serial) for serial in serials})
    for part in ledger.chunks(keys):
        for row in fetch(conn, _BY_TERMINAL_SERIAL, {"keys": list(part)}):
            serial = int(row.terminal_serial)
            found[serial] = TerminalPayment(
                row.id,
                serial,
                row.channel,
                int(row.amount),
                row.status,
                row.held_reason,
                row.billing_account_id,
                row.business_date,
                row.receipt_no,
                row.service_number,
                row.created_at,
                row.reversed_at,
            )
    return found


def check_ledger(uow: UnitOfWork) -> list[str]:
    """Every broken ledger invariant (empty when the ledger is consistent)."""
    uow.actor.require("payments.read")
    if uow.actor.org_path != "/":
        raise PermissionDenied(
            _("Checking the ledger is an operator-wide task"), code="operator_wide"
        )
    return ledger.check(uow.connection)


# -- customer accounts -----------------------------------------------------------------


def ensure_customer_accounts(
    uow: UnitOfWork, specs: Sequence[CustomerAccountSpec]
) -> dict[str, str]:
    """Open the ledger accounts of these billing accounts where missing (all or nothing,
    batched for the seed); returns billing account id → ledger account id. An existing
    account of the same customer is left as it is."""
    uow.actor.require("customers.write")
    currency = get_settings().currency
    wanted: dict[str, CustomerAccountSpec] = {}
    for spec in specs:
        _require_text("billing_account_id", spec.billing_account_id, 32)
        _require_text("customer_id", spec.customer_id, 32)
        _check_org_path(spec.org_path)
        if not uow.actor.sees(spec.org_path):
            raise PermissionDenied(
                _("You cannot act for organisation {org_path}"),
                code="outside_organisation",
                org_path=spec.org_path,
            )
        if spec.currency != currency:
            raise ValidationError(
                _("Accounts are kept in {currency} only"),
                code="invalid_currency",
                currency=currency,
            )
        earlier = wanted.setdefault(spec.billing_account_id, spec)
        if earlier.customer_id != spec.customer_id:
            raise _owner_mismatch(spec.billing_account_id)
    conn = uow.connection
    existing = ledger.customer_accounts(conn, list(wanted))
    for ba, account in existing.items():
        if account.customer_id != wanted[ba].customer_id:
            raise _owner_mismatch(ba)
    missing = [
        {
            "billing_account_id": ba,
            "customer_id": spec.customer_id,
            "org_path": spec.org_path,
            "currency": spec.currency,
        }
        for ba, spec in wanted.items()
        if ba not in existing
    ]
    created = ledger.insert_customer_accounts(conn, missing, now=utcnow())
    ids = {ba: ledger.account_id_for(ledger.customer_code(ba)) for ba in wanted}
    for ba in sorted(created):
        uow.audit(
            "ledger_account.opened",
            "ledger_account",
            ids[ba],
            {"billing_account_id": ba, "customer_id": wanted[ba].customer_id},
        )
    return ids


def _owner_mismatch(billing_account_id: str) -> Conflict:
    return Conflict(
        _("Billing account {billing_account_id} already has a ledger account of another customer"),
        code="account_owner_mismatch",
        billing_account_id=billing_account_id,
    )


def open_customer_account(
    uow: UnitOfWork,
    billing_account_id: str,
    customer_id: str,
    org_path: str,
    currency: str = "CNY",
) -> str:
    """Open one billing account's ledger account (idempotent); returns its id."""
    spec = CustomerAccountSpec(billing_account_id, customer_id, org_path, currency)
    return ensure_customer_accounts(uow, [spec])[billing_account_id]


def close_customer_account(uow: UnitOfWork, billing_account_id: str) -> None:
    """Close a billing account's ledger account: later payments to it are held. Its
    balance stays on it until refunded (销户退费). Closing a closed account changes
    nothing."""
    uow.actor.require("customers.write")
    t = account_table
    row = None
    if isinstance(billing_account_id, str):
        row = (
            uow.connection.execute(
                select(t.c.id, t.c.status, t.c.org_path)
                .where(t.c.billing_account_id == billing_account_id)
                .with_for_update()
            )
            .mappings()
            .first()
        )
    if row is None or not uow.actor.sees(row["org_path"]):
        raise NotFound(_("No such billing account"), code="billing_account_not_found")
    if row["status"] == AccountStatus.closed:
        return
    uow.connection.execute(
        update(t)
        .where(t.c.id == row["id"])
        .values(status=AccountStatus.closed.value, closed_at=utcnow())
    )
    uow.audit(
        "ledger_account.closed",
        "ledger_account",
        row["id"],
        {"billing_account_id": billing_account_id},
    )


# -- aggregates for reports ------------------------------------------------------------


@dataclass(frozen=True)
class DailyChannelTotal:
    business_date: date
    channel: str
    payments: int
    amount: int  # fen


def daily_totals(uow: UnitOfWork, first: date, last: date) -> list[DailyChannelTotal]:
    """Completed payments the actor may see (as ``list_payments``: owner or receiving
    organisation in its subtree), per business date and channel, ``first`` to ``last``
    inclusive. Held, pending and reversed money is left out: the figures are money that
    reached a customer account and stayed there. Needs ``reports.read`` (figures only).
    One grouped query on ``ix_payment_business_date_channel``."""
    uow.actor.require("reports.read")
    if first > last:
        raise ValidationError(_("The first day must not be after the last day"))
    t = payment_table
    actor = uow.actor
    query = (
        select(t.c.business_date, t.c.channel, func.count(), func.sum(t.c.amount))
        .where(
            t.c.business_date >= first,
            t.c.business_date <= last,
            t.c.status == PaymentStatus.completed.value,
            or_(actor.scope(t.c.org_path), actor.scope(t.c.received_org_path)),
        )
        .group_by(t.c.business_date, t.c.channel)
        .order_by(t.c.business_date, t.c.channel)
    )
    return [
        DailyChannelTotal(day, channel, int(count), int(amount or 0))
        for day, channel, count, amount in uow.connection.execute(query)
    ]


# -- held money: the console's list, and refunds at a counter --------------------------


def list_held_payments(
    uow: UnitOfWork,
    *,
    reason: str | None = None,
    terminal_id: str | None = None,
    first: date | None = None,
    last: date | None = None,
    limit: int = 20,
    offset: int = 0,
) -> tuple[list[PaymentView], int]:
    """Held payments (挂账) the actor may see (as ``list_payments``), newest first, and
    how many match in all: by held reason, receiving terminal and business dates
    ``first`` to ``last`` inclusive (the partial index ``ix_payment_held``)."""
    uow.actor.require("payments.read")
    if not 1 <= limit <= _LIST_MAX:
        raise ValidationError(
            _("limit must be between 1 and {maximum}"), code="invalid_limit", maximum=_LIST_MAX
        )
    if offset < 0:
        raise ValidationError(_("offset must be zero or more"), code="invalid_offset")
    if reason is not None and reason not in {r.value for r in HeldReason}:
        raise ValidationError(
            _("Unknown held reason {reason}"), code="invalid_held_reason", reason=str(reason)[:40]
        )
    if first is not None and last is not None and first > last:
        raise ValidationError(_("The first day must not be after the last day"))
    t = payment_table
    actor = uow.actor
    where = [
        t.c.status == PaymentStatus.held.value,
        or_(actor.scope(t.c.org_path), actor.scope(t.c.received_org_path)),
    ]
    if reason is not None:
        where.append(t.c.held_reason == reason)
    if terminal_id is not None:
        where.append(t.c.terminal_id == terminal_id)
    if first is not None:
        where.append(t.c.business_date >= first)
    if last is not None:
        where.append(t.c.business_date <= last)
    conn = uow.connection
    total = int(conn.scalar(select(func.count()).select_from(t).where(*where)) or 0)
    rows = conn.execute(
        select(t)
        .where(*where)
        .order_by(t.c.created_at.desc(), t.c.id.desc())
        .offset(offset)
        .limit(limit)
    ).mappings()
    return [_view(row) for row in rows], total


_HALL = "hall"


def _refund_hall(uow: UnitOfWork, row: RowMapping) -> tuple[str, str]:
    """(code, path) of the hall whose cash desk pays a refund: the actor's own unit when
    it is a hall; for staff above the halls (a city's or the operator's finance), the
    hall on the path where the money was received, so the customer is paid where they
    paid. A kiosk at a site outside any hall has no cash desk to name: refused."""
    try:
        own = iam.get_org_unit(uow, iam.org_unit_id_at(uow, uow.actor.org_path))
    except NotFound:  # operator-wide staff: their path "/" is above the root unit
        own = None
    if own is not None and own.level == _HALL:
        return own.code, own.path
    received = row["received_org_path"]
    parts = [p for p in received.strip("/").split("/") if p]
    for depth in range(len(parts), 0, -1):
        path = "/" + "/".join(parts[:depth]) + "/"
        if not uow.actor.sees(path):
            break
        unit = iam.get_org_unit(uow, iam.org_unit_id_at(uow, path))
        if unit.level == _HALL:
            return unit.code, unit.path
    raise Conflict(
        _("Payment {receipt_no} was not received at a hall: refund it as a member of a hall"),
        code="no_cash_desk",
        receipt_no=row["receipt_no"],
    )


def refund_held(uow: UnitOfWork, payment_id: str, note: str) -> PaymentView:
    """Mark held money for a cash refund at a counter (挂账退款): the money leaves
    suspense for the cash desk ``cash_desk:<hall code>`` that pays it out (a ``refund``
    transfer: suspense is debited, the desk's cash credited), and the payment becomes
    ``reversed`` with ``note`` as its reversal reason. Only a held payment; a refunded one
    is not refunded again (``invalid_payment_state``). Needs ``payments.settle`` (held
    money is settled either way: credited to an account, or paid back)."""
    uow.actor.require("payments.settle")
    _require_text("note", note, MAX_REASON)
    row = _locked_payment(uow, payment_id)
    if row["status"] != PaymentStatus.held:
        raise Conflict(
            _("Payment {receipt_no} is {status}, so it cannot be refunded"),
            code="invalid_payment_state",
            receipt_no=row["receipt_no"],
            status=row["status"],
        )
    new_status = _transition(row, "reverse")
    hall_code, hall_path = _refund_hall(uow, row)
    desk = f"cash_desk:{hall_code}"
    conn = uow.connection
    now = utcnow()
    day = business_date(now, get_settings().timezone)
    ledger.ensure_system_accounts(
        conn, {ledger.SUSPENSE: "/", desk: hall_path}, currency=row["currency"], now=now
    )
    refund = ledger.Transfer(
        new_id(),
        TransferKind.refund,
        ledger.account_id_for(ledger.SUSPENSE),
        ledger.account_id_for(desk),
        row["amount"],
        payment_id=row["id"],
    )
    ledger.write_transfers(conn, [refund], now=now, day=day, maintained=set())
    reason = note.strip()
    _set_payment(uow, row["id"], status=new_status.value, reversed_at=now, reversal_reason=reason)
    uow.audit(
        "payment.refunded",
        "payment",
        row["id"],
        {
            "receipt_no": row["receipt_no"],
            "amount": row["amount"],
            "held_reason": row["held_reason"],
            "cash_desk": desk,
            "note": reason,
        },
    )
    uow.emit(
        "payments.refunded",
        _event(
            row,
            status=new_status.value,
            held_reason=row["held_reason"],
            cash_desk=desk,
            org_path=hall_path,
            reason=reason,
        ),
        key=row["billing_account_id"] or row["id"],
    )
    return _reread(uow, row["id"])
