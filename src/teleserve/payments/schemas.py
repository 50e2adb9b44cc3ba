"""Inputs and outputs of the payments service.

Plain frozen dataclasses rather than pydantic models: ``record_payments`` is a hot path
(thousands of requests a second) and validates every field itself with the domain's own
errors and messages. The TMF676 REST schemas (camelCase, ``Money``) will map onto these.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any

from teleserve.core.audit import canonical_json
from teleserve.core.errors import DomainError


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    """One payment as a channel received it.

    ``idempotency_key`` is the client's key, unique across the whole operator: callers
    namespace it (``tsp:<terminal_id>:<serial>``, ``api:<client_id>:<Idempotency-Key>``).
    The target is ``billing_account_id``; a caller that only knows a service number
    resolves it through the inventory domain first (MSISDN_CHECK does) — a payment with a
    service number alone is recorded ``held``. ``source_id`` names the cash box
    (``kiosk_cash``) or cash desk (``counter_cash``) the money went into. ``org_path`` is
    the organisation where the money was received (default: the actor's). ``pending``
    asks for a pending transfer that ``post_pending`` completes later (e.g. when a remote
    billing system confirms).
    """

    idempotency_key: str
    channel: str
    amount: int
    billing_account_id: str | None = None
    service_number: str | None = None
    currency: str = "CNY"
    source_id: str | None = None
    terminal_id: str | None = None
    terminal_serial: str | None = None
    card_auth_code: str | None = None
    card_rrn: str | None = None
    external_ref: str | None = None
    org_path: str | None = None
    pending: bool = False
    # The channel decided to hold the money (a ``HeldReason``): recorded ``held`` in
    # suspense whatever the target account (a kiosk's business limits, DESIGN.md 6).
    hold_reason: str | None = None

    def body_hash(self) -> str:
        """SHA-256 of the canonical request body (every field but the key)."""
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        del body["idempotency_key"]
        if body["hold_reason"] is None:
            # Absent unless used, so digests stored before the field existed still match.
            del body["hold_reason"]
        return hashlib.sha256(canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """The answer for one request of a batch: a payment, or ``error`` and nothing written.

    ``replayed`` is true when the answer is the stored first answer to the same key and
    body (an earlier request, or an earlier item of the same batch).
    """

    idempotency_key: str
    payment_id: str | None = None
    receipt_no: str | None = None
    status: str | None = None
    held_reason: str | None = None
    amount: int | None = None
    currency: str | None = None
    billing_account_id: str | None = None
    business_date: str | None = None
    created_at: str | None = None
    replayed: bool = False
    error: DomainError | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def answer(self) -> dict[str, Any]:
        """The stored first answer (what a retry gets back)."""
        # Spelled out: ``dataclasses.asdict`` deep-copies and costs ~10x on the hot path.
        return {
            "payment_id": self.payment_id,
            "receipt_no": self.receipt_no,
            "status": self.status,
            "held_reason": self.held_reason,
            "amount": self.amount,
            "currency": self.currency,
            "billing_account_id": self.billing_account_id,
            "business_date": self.business_date,
            "created_at": self.created_at,
        }

    @classmethod
    def from_answer(cls, key: str, answer: dict[str, Any]) -> PaymentOutcome:
        known = {f.name for f in fields(cls)} - {"idempotency_key", "replayed", "error"}
        return cls(
            idempotency_key=key,
            replayed=True,
            **{name: value for name, value in answer.items() if name in known},
        )

    @classmethod
    def failed(cls, key: str, error: DomainError) -> PaymentOutcome:
        return cls(idempotency_key=key, error=error)


@dataclass(frozen=True, slots=True)
class PaymentView:
    """A payment as it stands now."""

    id: str
    receipt_no: str
    idempotency_key: str
    channel: str
    amount: int
    currency: str
    status: str
    held_reason: str | None
    billing_account_id: str | None
    service_number: str | None
    customer_id: str | None
    org_path: str
    received_org_path: str
    source_id: str | None
    terminal_id: str | None
    terminal_serial: str | None
    card_auth_code: str | None
    card_rrn: str | None
    external_ref: str | None
    created_at: datetime
    business_date: date
    completed_at: datetime | None
    settled_at: datetime | None
    reversed_at: datetime | None
    reversal_reason: str | None


@dataclass(frozen=True, slots=True)
class CustomerAccountSpec:
    """A billing account of the customers domain that needs its ledger account."""

    billing_account_id: str
    customer_id: str
    org_path: str
    currency: str = "CNY"


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's figures in normal-side terms (positive = the usual direction: the
    customer's money on a customer account, cash held on a cash box).

    ``balance`` counts posted entries only; ``pending_credit`` / ``pending_debit`` are
    pending transfers towards / away from the account; ``available`` is what can be spent
    now (posted, minus pending movements against the normal side)."""

    account_id: str
    code: str
    kind: str
    normal_side: str
    status: str
    currency: str
    balance: int
    pending_credit: int
    pending_debit: int
    available: int
    billing_account_id: str | None = None
    customer_id: str | None = None
