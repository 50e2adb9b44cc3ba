"""Tables of the customers domain (all prefixed ``cust_``).

A customer (``cust_customer``) is a party in the role of a buyer: exactly one party row
(``cust_individual`` or ``cust_organization``) describes who they are. Everything a
customer owns carries ``customer_id`` and a copy of the customer's ``org_path`` (the
owning organisation unit's materialised path, given by iam), so scoped queries need no
join and the tables can later be distributed by ``customer_id``.

Personal data: ID numbers are stored AES-GCM encrypted with a keyed blind index for exact
lookup and a masked copy for display; service passwords as argon2id PHC strings of the
peppered password; one-time codes and customer tokens only as keyed / SHA-256 digests.

Authentication state keyed by service number (``cust_auth_state``, ``cust_auth_failure``,
``cust_otp``) also exists for numbers that belong to nobody, so a lockout or a cooldown
looks the same for a number that does not exist (PROTOCOL.md: numbers cannot be
enumerated).
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base
from teleserve.core.ids import new_id


class CustomerCategory(StrEnum):
    individual = "individual"  # 个人
    organisation = "organisation"  # 政企 (the spelling catalog eligibility uses too)


class CustomerStatus(StrEnum):
    active = "active"
    closed = "closed"


class ContactKind(StrEnum):
    mobile = "mobile"
    email = "email"
    address = "address"


class AccountKind(StrEnum):
    prepaid = "prepaid"  # 预付费
    postpaid = "postpaid"  # 后付费


class AccountStatus(StrEnum):
    active = "active"
    closed = "closed"


class AuthFactor(StrEnum):
    password = "password"  # noqa: S105 - 服务密码, a factor's name
    otp = "otp"  # 短信验证码
    id_card = "id_card"  # 身份证 read by the terminal's reader, with a face match


class Customer(Base):
    __tablename__ = "cust_customer"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    category: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=CustomerStatus.active)
    # The party's name, copied here for prefix search and lists (shown masked).
    name: Mapped[str] = mapped_column(String(200))
    org_unit_id: Mapped[str] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        # text_pattern_ops lets PostgreSQL use the index for LIKE 'prefix%' in any locale.
        Index("ix_cust_customer_name", "name", postgresql_ops={"name": "text_pattern_ops"}),
    )


class Individual(Base):
    __tablename__ = "cust_individual"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("cust_customer.id"), unique=True
    )
    org_path: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(100))
    gender: Mapped[str | None] = mapped_column(String(10))
    birth_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]


class Organization(Base):
    __tablename__ = "cust_organization"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("cust_customer.id"), unique=True
    )
    org_path: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(200))
    # 统一社会信用代码: public information, stored in clear and unique.
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    created_at: Mapped[datetime]


class IdentityDocument(Base):
    __tablename__ = "cust_identity_document"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(String(32), ForeignKey("cust_customer.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255))
    doc_type: Mapped[str] = mapped_column(String(40))
    # AES-GCM (core.crypto.encrypt, purpose "id_number") of the normalised number.
    number_encrypted: Mapped[str] = mapped_column(Text)
    # HMAC blind index (core.crypto.blind_index, purpose "id_number"): exact lookup.
    number_index: Mapped[str] = mapped_column(String(64))
    number_masked: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]

    __table_args__ = (
        # One document identifies one customer; the index also serves the lookup.
        Index("uq_cust_identity_document_number", "number_index", "doc_type", unique=True),
    )


class ContactMedium(Base):
    __tablename__ = "cust_contact_medium"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    customer_id: Mapped[str] = mapped_column(String(32), ForeignKey("cust_customer.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(300))
    preferred: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_cust_contact_medium_kind_value", "kind", "value"),)


class BillingAccount(Base):
    __tablename__ = "cust_billing_account"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[str] = mapped_column(String(32), ForeignKey("cust_customer.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default=AccountStatus.active)
    # Postpaid only (0 for prepaid): how far usage may run ahead of payment, in fen.
    credit_limit: Mapped[int] = mapped_column(BigInteger, default=0)
    bill_cycle_day: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class ServiceCredential(Base):
    """A service number (MSISDN, fixed line, broadband account) and who owns it, with its
    service password once one is set. Inventory keeps it in step with its subscriptions
    (``link_service_number`` / ``set_service_password`` / ``unlink_service_number``)."""

    __tablename__ = "cust_service_credential"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    service_number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[str] = mapped_column(String(32), ForeignKey("cust_customer.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    password_set_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class AuthState(Base):
    """Failed logins and the lockout of one service number (existing or not)."""

    __tablename__ = "cust_auth_state"

    service_number: Mapped[str] = mapped_column(String(32), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]


class AuthFailure(Base):
    """One failed customer login attempt. Its id makes recording it idempotent: a failure
    written in the caller's transaction and again after a rollback counts once."""

    __tablename__ = "cust_auth_failure"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    service_number: Mapped[str] = mapped_column(String(32))
    method: Mapped[str] = mapped_column(String(20))
    terminal_id: Mapped[str | None] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index("ix_cust_auth_failure_number_at", "service_number", "at"),)


class OneTimeCode(Base):
    """One SMS code sent (or, for a number that belongs to nobody, pretended sent)."""

    __tablename__ = "cust_otp"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    service_number: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str | None] = mapped_column(String(32))
    terminal_id: Mapped[str | None] = mapped_column(String(64))
    # Keyed HMAC of "<id>:<code>"; empty when no code was sent (unknown number).
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    tries: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_cust_otp_number_created", "service_number", "created_at"),
        Index("ix_cust_otp_terminal_created", "terminal_id", "created_at"),
    )


class CustomerSession(Base):
    """A customer's login: the token is given once, only its SHA-256 is kept."""

    __tablename__ = "cust_session"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    service_number: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[str] = mapped_column(String(32), ForeignKey("cust_customer.id"), index=True)
    org_path: Mapped[str] = mapped_column(String(255))
    level: Mapped[int] = mapped_column(Integer)
    # Comma-separated AuthFactor values in the order they were proven.
    factors: Mapped[str] = mapped_column(String(100))
    terminal_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]

    # A kiosk login ends the terminal's other live sessions (a terminal holds one token).
    __table_args__ = (
        Index(
            "ix_cust_session_terminal_live",
            "terminal_id",
            postgresql_where=text("ended_at IS NULL"),
            sqlite_where=text("ended_at IS NULL"),
        ),
    )


# Core handles for the batch and authentication paths (``__table__`` is typed as a plain
# FromClause).
customer_table = cast(Table, Customer.__table__)
individual_table = cast(Table, Individual.__table__)
organization_table = cast(Table, Organization.__table__)
document_table = cast(Table, IdentityDocument.__table__)
contact_table = cast(Table, ContactMedium.__table__)
account_table = cast(Table, BillingAccount.__table__)
credential_table = cast(Table, ServiceCredential.__table__)
auth_state_table = cast(Table, AuthState.__table__)
auth_failure_table = cast(Table, AuthFailure.__table__)
otp_table = cast(Table, OneTimeCode.__table__)
session_table = cast(Table, CustomerSession.__table__)
