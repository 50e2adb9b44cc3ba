"""Tables of the inventory domain: subscriptions (lines) with their VAS and bars.

A subscription's bars and VAS are child tables that keep their history: a bar is lifted
(``lifted_at`` set) and a VAS ended (``end_at`` set), never deleted, so "who barred this
line, when and why" stays answerable. Partial unique indexes (PostgreSQL and SQLite both
have them) hold the rules "one live line per service number", "one open bar of a type per
line" and "one current subscription to a VAS per line" in the database itself.
Child rows repeat ``customer_id`` and ``org_path`` so the tables can later be distributed
by customer (DESIGN.md section 10).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from teleserve.core.db import Base
from teleserve.core.ids import new_id

_LIVE = text("status <> 'terminated'")
_OPEN_BAR = text("lifted_at IS NULL")
_CURRENT_VAS = text("end_at IS NULL")


class Subscription(Base):
    __tablename__ = "inventory_subscription"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    service_number: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[str] = mapped_column(String(32))
    billing_account_id: Mapped[str] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255))
    customer_category: Mapped[str] = mapped_column(String(20))
    account_type: Mapped[str] = mapped_column(String(20))
    plan_code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None]
    terminated_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]

    bars: Mapped[list[SubscriptionBar]] = relationship(
        back_populates="subscription",
        lazy="selectin",
        order_by="SubscriptionBar.placed_at",
    )
    vas: Mapped[list[SubscriptionVas]] = relationship(
        back_populates="subscription",
        lazy="selectin",
        order_by="SubscriptionVas.start_at",
    )

    __table_args__ = (
        Index(
            "uq_inventory_subscription_live_number",
            "service_number",
            unique=True,
            postgresql_where=_LIVE,
            sqlite_where=_LIVE,
        ),
        Index("ix_inventory_subscription_customer", "customer_id"),
        Index("ix_inventory_subscription_account", "billing_account_id"),
        Index("ix_inventory_subscription_org_path", "org_path"),
    )


class SubscriptionBar(Base):
    """A bar on a line (停机原因). Open while ``lifted_at`` is NULL."""

    __tablename__ = "inventory_subscription_bar"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("inventory_subscription.id"), index=True
    )
    customer_id: Mapped[str] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255))
    bar: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)
    placed_by: Mapped[str] = mapped_column(String(100))
    placed_at: Mapped[datetime]
    lifted_at: Mapped[datetime | None]
    lifted_by: Mapped[str | None] = mapped_column(String(100))
    lift_reason: Mapped[str | None] = mapped_column(Text)

    subscription: Mapped[Subscription] = relationship(back_populates="bars")

    __table_args__ = (
        Index(
            "uq_inventory_subscription_bar_open",
            "subscription_id",
            "bar",
            unique=True,
            postgresql_where=_OPEN_BAR,
            sqlite_where=_OPEN_BAR,
        ),
    )


class SubscriptionVas(Base):
    """A value-added service on a line from ``start_at`` until ``end_at`` (NULL: current)."""

    __tablename__ = "inventory_subscription_vas"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("inventory_subscription.id"), index=True
    )
    customer_id: Mapped[str] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255))
    code: Mapped[str] = mapped_column(String(40))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    added_by: Mapped[str] = mapped_column(String(100))
    removed_by: Mapped[str | None] = mapped_column(String(100))

    subscription: Mapped[Subscription] = relationship(back_populates="vas")

    __table_args__ = (
        Index(
            "uq_inventory_subscription_vas_current",
            "subscription_id",
            "code",
            unique=True,
            postgresql_where=_CURRENT_VAS,
            sqlite_where=_CURRENT_VAS,
        ),
    )
