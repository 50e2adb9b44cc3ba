"""Input and output models of the inventory domain (subscriptions, 用户 / lines).

Shapes and types only; the rules live in ``service``. Outputs are frozen snapshots so
other domains never hold ORM rows.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class LineKind(StrEnum):
    mobile = "mobile"  # MSISDN
    fixed_line = "fixed_line"  # 固话
    broadband = "broadband"  # 宽带账号


class SubscriptionStatus(StrEnum):
    """The stored lifecycle. "Suspended" is not a status: it is active with bars."""

    pending = "pending"
    active = "active"
    terminated = "terminated"


class Bar(StrEnum):
    credit = "credit"  # 欠费停机: arrears; a payment lifts it
    lost = "lost"  # 挂失: the customer reported the SIM / phone lost
    keep_number = "keep_number"  # 停机保号: the customer keeps the number while away
    admin = "admin"  # 管理停机: operator decision
    fraud = "fraud"  # 涉诈停机: fraud suspicion


class NewSubscription(BaseModel):
    """A line to create. ``customer_category`` and ``account_type`` are the customer's and
    billing account's (from the customers domain) at order time; they are kept on the line
    so later plan and VAS changes are checked against the same contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    service_number: str
    kind: LineKind
    customer_id: str
    billing_account_id: str
    org_path: str
    plan_code: str
    customer_category: str
    account_type: str
    vas_codes: tuple[str, ...] = ()
    status: SubscriptionStatus = SubscriptionStatus.pending


class BarOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    bar: Bar
    reason: str
    placed_by: str
    placed_at: datetime


class VasOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    code: str
    start_at: datetime
    end_at: datetime | None


class SubscriptionOut(BaseModel):
    """A line with its current bars and its current VAS."""

    model_config = ConfigDict(frozen=True)

    id: str
    service_number: str
    kind: LineKind
    customer_id: str
    billing_account_id: str
    org_path: str
    customer_category: str
    account_type: str
    plan_code: str
    status: SubscriptionStatus
    bars: tuple[BarOut, ...]
    vas: tuple[VasOut, ...]
    created_at: datetime
    activated_at: datetime | None
    terminated_at: datetime | None
    updated_at: datetime

    @property
    def bar_types(self) -> frozenset[Bar]:
        return frozenset(b.bar for b in self.bars)

    @property
    def vas_codes(self) -> tuple[str, ...]:
        return tuple(v.code for v in self.vas)

    @property
    def suspended(self) -> bool:
        """停机: an active line with at least one bar."""
        return self.status is SubscriptionStatus.active and bool(self.bars)
