"""Tables of the catalog domain: product offerings and points rewards.

The catalog is operator-wide (no customer_id / org_path); regional availability is an
eligibility rule (``regions``: org-path subtrees). An offering keeps its prices, allowances
and eligibility in its own row: the catalog is small (hundreds of rows), is read far more
than written, and one row per offering is what billing and the order screens need at once.
Eligibility lists are JSON arrays of codes / org paths; they are evaluated in Python.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from teleserve.core.db import Base, Money
from teleserve.core.ids import new_id


class DecimalText(TypeDecorator[Decimal]):
    """An exact decimal stored as its plain text (``"2.93"``).

    ``Numeric`` would go through a float on SQLite (and SQLAlchemy warns about it); usage
    rates are fractions of a fen per unit and must come back exactly as given.
    """

    impl = String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return format(Decimal(value), "f")

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - only a hand-edited row gets here
            raise ValueError(f"not a decimal in the catalog: {value!r}") from None


class Offering(Base):
    __tablename__ = "catalog_offering"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    category: Mapped[str] = mapped_column(String(40))
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    description_zh: Mapped[str] = mapped_column(Text)
    description_en: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10))
    valid_from: Mapped[datetime | None]
    valid_to: Mapped[datetime | None]
    # Prices: fees in fen, usage rates in (fractional) fen per unit beyond the allowance.
    monthly_fee: Mapped[int] = mapped_column(Money)
    one_time_fee: Mapped[int] = mapped_column(Money)
    voice_rate: Mapped[Decimal] = mapped_column(DecimalText)
    data_rate: Mapped[Decimal] = mapped_column(DecimalText)
    sms_rate: Mapped[Decimal] = mapped_column(DecimalText)
    # Monthly allowances.
    voice_minutes: Mapped[int] = mapped_column(BigInteger)
    data_mb: Mapped[int] = mapped_column(BigInteger)
    sms_count: Mapped[int] = mapped_column(BigInteger)
    # Eligibility (empty list: no restriction).
    customer_categories: Mapped[list[Any]]
    account_types: Mapped[list[Any]]
    regions: Mapped[list[Any]]
    requires_plans: Mapped[list[Any]]
    excludes: Mapped[list[Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index("ix_catalog_offering_kind_status", "kind", "status"),)


class Reward(Base):
    """Something a customer can redeem points for (the loyalty domain does the redeeming)."""

    __tablename__ = "catalog_reward"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name_zh: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    description_zh: Mapped[str] = mapped_column(Text)
    description_en: Mapped[str] = mapped_column(Text)
    points_cost: Mapped[int] = mapped_column(BigInteger)
    grant: Mapped[str] = mapped_column(String(20))
    offering_code: Mapped[str | None] = mapped_column(String(40))
    credit_amount: Mapped[int | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
