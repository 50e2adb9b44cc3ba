"""Input and output models of the catalog domain.

Inputs (``OfferingSpec``, ``OfferingChanges``, ``RewardSpec``, ``RewardChanges``) only
describe shapes and types; every business rule (code format, non-negative fees, which
kinds may carry which eligibility rules...) is checked in ``service`` so that it raises a
translated ``teleserve.core.errors.ValidationError``. Outputs are frozen snapshots: other
domains read offerings through the service and never hold ORM rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Strict

# Fees, allowances and points are whole numbers: a float (12.5) or a string ("12") is
# refused instead of being silently coerced.
StrictInt = Annotated[int, Strict()]


class OfferingKind(StrEnum):
    plan = "plan"  # 套餐 (mobile)
    vas = "vas"  # 增值业务
    broadband = "broadband"  # 宽带
    fixed_line = "fixed_line"  # 固话


# Offerings a line is built on; a VAS is added on top of one of these.
BASE_KINDS = frozenset({OfferingKind.plan, OfferingKind.broadband, OfferingKind.fixed_line})


class OfferingStatus(StrEnum):
    draft = "draft"
    active = "active"
    retired = "retired"


class CustomerCategory(StrEnum):
    individual = "individual"  # 个人
    organisation = "organisation"  # 政企


class AccountType(StrEnum):
    prepaid = "prepaid"  # 预付费
    postpaid = "postpaid"  # 后付费


class RewardGrant(StrEnum):
    offering = "offering"  # e.g. a data-pack VAS
    bill_credit = "bill_credit"  # money off the bill, in fen


class RewardStatus(StrEnum):
    active = "active"
    retired = "retired"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OfferingSpec(_Input):
    """A new product offering. Empty eligibility tuples mean "no restriction"."""

    code: str
    kind: OfferingKind
    name_zh: str
    name_en: str
    description_zh: str = ""
    description_en: str = ""
    category: str = ""
    status: OfferingStatus = OfferingStatus.draft
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    # Prices: fees in fen; usage rates in fen per unit (minute, MB, message) beyond the
    # allowance, exact decimals (rating rounds once per line, DESIGN.md section 5).
    monthly_fee: StrictInt = 0
    one_time_fee: StrictInt = 0
    voice_rate: Decimal = Decimal(0)
    data_rate: Decimal = Decimal(0)
    sms_rate: Decimal = Decimal(0)
    # Monthly allowances.
    voice_minutes: StrictInt = 0
    data_mb: StrictInt = 0
    sms_count: StrictInt = 0
    # Eligibility.
    customer_categories: tuple[CustomerCategory, ...] = ()
    account_types: tuple[AccountType, ...] = ()
    regions: tuple[str, ...] = ()  # org paths (subtrees) where it is sold
    requires_plans: tuple[str, ...] = ()  # VAS only: base plans it needs (empty = any)
    excludes: tuple[str, ...] = ()  # VAS only: mutually exclusive VAS codes


class OfferingChanges(_Input):
    """A partial update: only the fields given are changed. Code and kind never change
    (lines and bills refer to them)."""

    name_zh: str | None = None
    name_en: str | None = None
    description_zh: str | None = None
    description_en: str | None = None
    category: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    monthly_fee: StrictInt | None = None
    one_time_fee: StrictInt | None = None
    voice_rate: Decimal | None = None
    data_rate: Decimal | None = None
    sms_rate: Decimal | None = None
    voice_minutes: StrictInt | None = None
    data_mb: StrictInt | None = None
    sms_count: StrictInt | None = None
    customer_categories: tuple[CustomerCategory, ...] | None = None
    account_types: tuple[AccountType, ...] | None = None
    regions: tuple[str, ...] | None = None
    requires_plans: tuple[str, ...] | None = None
    excludes: tuple[str, ...] | None = None


class OfferingOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    code: str
    kind: OfferingKind
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str
    category: str
    status: OfferingStatus
    valid_from: datetime | None
    valid_to: datetime | None
    monthly_fee: int
    one_time_fee: int
    voice_rate: Decimal
    data_rate: Decimal
    sms_rate: Decimal
    voice_minutes: int
    data_mb: int
    sms_count: int
    customer_categories: tuple[CustomerCategory, ...]
    account_types: tuple[AccountType, ...]
    regions: tuple[str, ...]
    requires_plans: tuple[str, ...]
    excludes: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    def on_sale(self, at: datetime) -> bool:
        """Active and inside its validity window at ``at`` (valid_to is exclusive)."""
        return (
            self.status is OfferingStatus.active
            and (self.valid_from is None or self.valid_from <= at)
            and (self.valid_to is None or at < self.valid_to)
        )

    def available_in(self, org_path: str) -> bool:
        """Sold in the organisation subtree ``org_path`` (no regions: everywhere)."""
        return not self.regions or any(org_path.startswith(r) for r in self.regions)


class RewardSpec(_Input):
    """A points reward: ``grant`` says what redeeming it gives (an offering such as a data
    pack, or a bill credit of ``credit_amount`` fen)."""

    code: str
    name_zh: str
    name_en: str
    description_zh: str = ""
    description_en: str = ""
    points_cost: StrictInt
    grant: RewardGrant
    offering_code: str | None = None
    credit_amount: StrictInt | None = None


class RewardChanges(_Input):
    name_zh: str | None = None
    name_en: str | None = None
    description_zh: str | None = None
    description_en: str | None = None
    points_cost: StrictInt | None = None
    grant: RewardGrant | None = None
    offering_code: str | None = None
    credit_amount: StrictInt | None = None


class RewardOut(BaseModel):
    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    code: str
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str
    points_cost: int
    grant: RewardGrant
    offering_code: str | None
    credit_amount: int | None
    status: RewardStatus
    created_at: datetime
    updated_at: datetime


class PriceType(StrEnum):
    recurring = "recurring"  # the monthly fee
    one_time = "oneTime"  # the connection / installation fee
    usage = "usage"  # a rate per unit beyond the allowance


@dataclass(frozen=True)
class PriceComponent:
    """One price of an offering, as the TMF620 productOfferingPrice resource shows it.

    An offering keeps its prices in its own row (monthly and one-time fees, three usage
    rates); integrators see each as a price resource of its own, identified by the
    offering id and ``key``. ``amount`` is in fen: a whole number for fees, an exact
    decimal per ``unit`` for usage rates (a fraction of a fen per MB is common)."""

    offering_id: str
    key: str  # "recurring", "oneTime", "usage-voice", "usage-data", "usage-sms"
    price_type: PriceType
    amount: Decimal
    unit: str | None = None  # usage only: "min", "MB", "SMS"

    @property
    def id(self) -> str:
        return f"{self.offering_id}-{self.key}"


# Usage rates of an offering: (key suffix, rate field, allowance field, unit).
USAGE_RATES = (
    ("voice", "voice_rate", "voice_minutes", "min"),
    ("data", "data_rate", "data_mb", "MB"),
    ("sms", "sms_rate", "sms_count", "SMS"),
)


def price_components(offering: OfferingOut) -> tuple[PriceComponent, ...]:
    """The prices an offering has. The monthly fee always (zero means free: it is still
    the offering's price); the one-time fee and the usage rates only when not zero,
    because a zero there means "none" (broadband has no voice rate, most VAS have no
    connection fee) rather than a free service."""
    prices = [
        PriceComponent(
            offering.id, PriceType.recurring, PriceType.recurring, Decimal(offering.monthly_fee)
        )
    ]
    if offering.one_time_fee:
        prices.append(
            PriceComponent(
                offering.id, PriceType.one_time, PriceType.one_time, Decimal(offering.one_time_fee)
            )
        )
    for suffix, rate_field, _allowance, unit in USAGE_RATES:
        rate: Decimal = getattr(offering, rate_field)
        if rate:
            prices.append(
                PriceComponent(offering.id, f"usage-{suffix}", PriceType.usage, rate, unit)
            )
    return tuple(prices)
