"""Tables of the payments domain: the double-entry ledger and the payments it records.

The rules these tables serve are described in ``teleserve.payments.ledger`` (accounts,
transfers, entries, balances) and ``teleserve.payments.service`` (payments, idempotency).
Cross-domain ids (billing account, customer, terminal, cash box) are plain strings: no
foreign key leaves the domain. Inside the domain there is deliberately no foreign key from
entries or transfers to ``ledger_account`` either: on PostgreSQL every such key takes a
``FOR KEY SHARE`` lock on the referenced row, and the system accounts every payment
touches (cash box, clearing, suspense) would become one hot, multixact-locked row — the
thing DESIGN.md section 5 forbids. ``check_ledger`` reports entries of unknown accounts.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    Index,
    Sequence,
    String,
    Table,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base
from teleserve.core.ids import new_id


class AccountKind(StrEnum):
    customer = "customer"  # mirrors one billing account of the customers domain
    system = "system"  # cash box, cash desk, clearing, suspense, revenue...


class NormalSide(StrEnum):
    """The side on which an account's balance is shown positive (accounting convention:
    entries are signed debit-positive, so a credit-normal balance is minus their sum)."""

    debit = "debit"
    credit = "credit"


class AccountStatus(StrEnum):
    open = "open"
    closed = "closed"


class TransferStatus(StrEnum):
    pending = "pending"
    posted = "posted"
    voided = "voided"


class TransferKind(StrEnum):
    payment = "payment"  # money received → customer account
    hold = "hold"  # money received → suspense (held 挂账)
    settlement = "settlement"  # suspense → customer account
    reversal = "reversal"  # compensates an earlier posted transfer (冲正)
    refund = "refund"  # held money paid back in cash: suspense → a hall's cash desk


class PaymentStatus(StrEnum):
    completed = "completed"
    pending = "pending"
    held = "held"
    reversed = "reversed"


class Channel(StrEnum):
    kiosk_cash = "kiosk_cash"
    kiosk_card = "kiosk_card"
    counter_cash = "counter_cash"
    web = "web"
    api = "api"


class HeldReason(StrEnum):
    unknown_account = "unknown_account"  # no ledger account for the billing account id
    account_closed = "account_closed"
    unresolved_target = "unresolved_target"  # only a service number, no billing account
    # Decided by the channel (TSP/1 CASH_PAYMENT / CARD_PAYMENT, PROTOCOL.md "Money
    # requests are always recorded"): the money came in, but is not credited.
    number_not_payable = "number_not_payable"
    amount_mismatch = "amount_mismatch"  # the notes do not add up to the stated amount
    unknown_denomination = "unknown_denomination"
    over_limit = "over_limit"
    reversed_original = "reversed_original"  # a REVERSAL named it before it arrived
    reversed = "reversed"  # cash reversed at the kiosk: in suspense, refund at a counter


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
_BIGINT_PK = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")

# Receipt serials on PostgreSQL: ``nextval`` is not transactional and takes no row lock,
# so concurrent payment transactions never queue on a counter row (gaps after a rollback
# are acceptable for receipts, unlike invoice numbers, which the tax system issues).
RECEIPT_SEQUENCE = Sequence("payment_receipt_seq", metadata=Base.metadata)
# SQLite has one writer anyway: its serial is a counter row in ``record_sequence``.
RECEIPT_COUNTER = "payments.receipt"


class LedgerAccount(Base):
    __tablename__ = "ledger_account"

    # Derived from ``code`` (see ``ledger.account_id_for``) so a batch can name a system
    # account without first reading it.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(10))
    normal_side: Mapped[str] = mapped_column(String(6))
    status: Mapped[str] = mapped_column(String(10), default=AccountStatus.open)
    currency: Mapped[str] = mapped_column(String(3))
    billing_account_id: Mapped[str | None] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255))
    # Maintained for customer accounts only, in the transaction that posts their entries
    # (normal-side terms: a positive balance is the customer's money). System accounts
    # keep zeros here: their figures are always SUMs of entries and pending transfers.
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_credit: Mapped[int] = mapped_column(BigInteger, default=0)
    pending_debit: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("uq_ledger_account_code", "code", unique=True),
        Index("uq_ledger_account_billing_account_id", "billing_account_id", unique=True),
        Index("ix_ledger_account_customer_id", "customer_id"),
    )


class LedgerTransfer(Base):
    """One movement of money between two accounts: pending → posted | voided.

    A pending transfer has no entries: its amount shows only as pending on both accounts.
    Posting writes its two entries; voiding writes none. A posted transfer is never
    changed again — it is compensated by a new ``reversal`` transfer.
    """

    __tablename__ = "ledger_transfer"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    payment_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(12))
    debit_account_id: Mapped[str] = mapped_column(String(32))
    credit_account_id: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(8))
    reverses_id: Mapped[str | None] = mapped_column(String(32))
    business_date: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime]
    posted_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("debit_account_id <> credit_account_id", name="two_accounts"),
        Index("ix_ledger_transfer_payment_id", "payment_id"),
        # Pending amounts of an account are SUMs over these small partial indexes.
        Index(
            "ix_ledger_transfer_pending_credit",
            "credit_account_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index(
            "ix_ledger_transfer_pending_debit",
            "debit_account_id",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )


class LedgerEntry(Base):
    """One signed leg of a posted transfer: debit positive, credit negative.

    Append-only; the two entries of a transfer sum to zero, so all entries always do.
    """

    __tablename__ = "ledger_entry"

    id: Mapped[int] = mapped_column(_BIGINT_PK, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    business_date: Mapped[date] = mapped_column(Date)
    posted_at: Mapped[datetime]

    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_nonzero"),
        Index("ix_ledger_entry_transfer_id", "transfer_id"),
        # Balance roll-ups (SUM per account) and statements by date.
        Index("ix_ledger_entry_account", "account_id", "business_date", "amount"),
    )


class Payment(Base):
    __tablename__ = "payment"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    receipt_no: Mapped[str] = mapped_column(String(24))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(10))
    held_reason: Mapped[str | None] = mapped_column(String(40))
    # The target as requested, and where the money actually sits.
    billing_account_id: Mapped[str | None] = mapped_column(String(32))
    service_number: Mapped[str | None] = mapped_column(String(32))
    ledger_account_id: Mapped[str | None] = mapped_column(String(32))
    source_account_id: Mapped[str] = mapped_column(String(32))
    # Owner (the customer's organisation; the receiving one while held) and the place the
    # money was taken (a hall's cashier sees the payments taken at the hall).
    customer_id: Mapped[str | None] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255))
    received_org_path: Mapped[str] = mapped_column(String(255))
    # External references for reconciliation.
    source_id: Mapped[str | None] = mapped_column(String(64))  # cash box / cash desk id
    terminal_id: Mapped[str | None] = mapped_column(String(64))
    terminal_serial: Mapped[str | None] = mapped_column(String(64))
    card_auth_code: Mapped[str | None] = mapped_column(String(12))
    card_rrn: Mapped[str | None] = mapped_column(String(24))
    external_ref: Mapped[str | None] = mapped_column(String(64))
    recorded_by_kind: Mapped[str] = mapped_column(String(20))
    recorded_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    business_date: Mapped[date] = mapped_column(Date)
    completed_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    reversed_at: Mapped[datetime | None]
    reversal_reason: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        Index("uq_payment_receipt_no", "receipt_no", unique=True),
        # No unique index on idempotency_key: payment_idempotency's primary key holds that
        # uniqueness (a payment is inserted only under a key its transaction has just
        # claimed there, and ledger.check verifies the pairing), and lookups by key go
        # through it. A second index on the same random keys cost every money batch a
        # leaf page per payment (docs/decisions.md, "Payment indexes").
        Index("ix_payment_billing_account_id", "billing_account_id"),
        Index("ix_payment_business_date_channel", "business_date", "channel"),
        Index(
            "ix_payment_held",
            "business_date",
            postgresql_where=text("status = 'held'"),
            sqlite_where=text("status = 'held'"),
        ),
        # The held list filtered by terminal: only held payments are looked up by
        # terminal (a terminal's own payments are found by their idempotency keys).
        Index(
            "ix_payment_held_terminal",
            "terminal_id",
            "terminal_serial",
            postgresql_where=text("status = 'held'"),
            sqlite_where=text("status = 'held'"),
        ),
    )


class PaymentIdempotency(Base):
    """The first answer to each client key (DESIGN.md section 5: a retry returns it)."""

    __tablename__ = "payment_idempotency"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    payment_id: Mapped[str] = mapped_column(String(32))
    response: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


# Core handles for the batch paths (``__table__`` is typed as a plain FromClause).
account_table = cast(Table, LedgerAccount.__table__)
transfer_table = cast(Table, LedgerTransfer.__table__)
entry_table = cast(Table, LedgerEntry.__table__)
payment_table = cast(Table, Payment.__table__)
idempotency_table = cast(Table, PaymentIdempotency.__table__)
