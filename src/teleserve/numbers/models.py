"""Tables of the numbers domain (号码资源): ranges, grades, the numbers themselves, and one
lock row per ID card for the 一证五号 rule.

State lives in ``pool_number.status`` (free → reserved → assigned → quarantine → free).
Reservations and quarantines carry their end time; a lapsed one counts as free at once
(see ``service``) and a sweep later rewrites the stored status.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base, Money
from teleserve.core.ids import new_id


class NumberKind(StrEnum):
    mobile = "mobile"
    fixed = "fixed"


class NumberStatus(StrEnum):
    free = "free"
    reserved = "reserved"
    assigned = "assigned"
    quarantine = "quarantine"


class NumberRange(Base):
    """A block of numbers of one region: ``prefix`` + every suffix from start to end."""

    __tablename__ = "number_range"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(10))
    prefix: Mapped[str] = mapped_column(String(16))
    # Suffixes as digit strings so their width (leading zeros) is part of the definition.
    start_suffix: Mapped[str] = mapped_column(String(8))
    end_suffix: Mapped[str] = mapped_column(String(8))
    size: Mapped[int]
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))


class NumberGrade(Base):
    """A premium grade 靓号: ``pattern`` must fully match the last ``digits`` digits."""

    __tablename__ = "number_grade"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_zh: Mapped[str] = mapped_column(String(50))
    name_en: Mapped[str] = mapped_column(String(100))
    pattern: Mapped[str] = mapped_column(String(200))
    digits: Mapped[int]
    premium_fee: Mapped[int] = mapped_column(Money)  # one-time, fen
    min_plan_fee: Mapped[int] = mapped_column(Money)  # monthly plan floor, fen
    # When several grades match, the highest priority wins (then the higher fee).
    priority: Mapped[int]
    created_at: Mapped[datetime]


def _where(condition: str) -> dict[str, Any]:
    """A partial index's condition, for both databases."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


class PoolNumber(Base):
    __tablename__ = "pool_number"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    value: Mapped[str] = mapped_column(String(16), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    range_id: Mapped[str] = mapped_column(String(32), ForeignKey("number_range.id"))
    org_path: Mapped[str] = mapped_column(String(255))
    grade_code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(12), default=NumberStatus.free)
    # Who holds the reservation (``customer:<id>``, ``session:<ref>``, ``order:<no>``);
    # kept after assignment as the trace of which order took the number.
    holder: Mapped[str | None] = mapped_column(String(100))
    reserved_until: Mapped[datetime | None]
    # References into other domains: plain strings, no foreign keys.
    customer_id: Mapped[str | None] = mapped_column(String(32))
    subscription_ref: Mapped[str | None] = mapped_column(String(64))
    # crypto.blind_index(id_number, "id_number") of the ID card the number is registered to.
    id_index: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime | None]
    quarantine_until: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    # The sweeps' and the holders' indexes are partial: they hold only the rows that have
    # a value for them (a reserved or quarantined number — only those have an end time —,
    # an assigned one), so the numbers that are simply free, most of a pool, cost nothing
    # in them, and assigning a free number adds index entries instead of moving them (the
    # demo seed's largest statement). Both databases use them for ``reserved_until <= :t``
    # or ``id_index = :x``. (A condition on ``status`` instead of ``IS NOT NULL`` made
    # SQLite's assignment UPDATE ten times slower: 87 against 9 µs a row.)
    __table_args__ = (
        Index("ix_pool_number_org_status", "org_path", "status"),
        Index(
            "ix_pool_number_reserved_until",
            "reserved_until",
            **_where("reserved_until IS NOT NULL"),
        ),
        Index(
            "ix_pool_number_quarantine_until",
            "quarantine_until",
            **_where("quarantine_until IS NOT NULL"),
        ),
        Index("ix_pool_number_id_index", "id_index", **_where("id_index IS NOT NULL")),
        Index("ix_pool_number_customer", "customer_id", **_where("customer_id IS NOT NULL")),
        Index("ix_pool_number_range", "range_id"),
    )


class IdCardLock(Base):
    """One row per ID card that ever held a number: the mutex for 一证五号.

    ``assign`` upserts (and so row-locks) this row before counting the card's assigned
    numbers, which serialises assignments to one card on PostgreSQL without touching any
    other card. The truth stays in ``pool_number``; this row holds no count to drift.
    """

    __tablename__ = "number_id_card"

    id_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    touched_at: Mapped[datetime]
