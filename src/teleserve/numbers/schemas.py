"""What the numbers service returns (and what a later TMF685 router will serialise)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from teleserve.numbers.models import NumberKind, NumberStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class AssignItem:
    """One number of ``service.assign_batch``: the arguments of ``service.assign``.

    A plain dataclass, not a pydantic model: the seed builds tens of thousands of them and
    the service validates every field itself (with the same checks and messages as
    ``assign``). Keyword-only, because four of the five fields are strings that are easy
    to swap by position."""

    number: str
    holder: str
    id_index: str  # crypto.blind_index(id_number, "id_number"), never the ID number
    customer_id: str
    subscription_ref: str | None = None


class NumberOut(BaseModel):
    """A number as the caller may see it. ``status`` is the *effective* state: a lapsed
    reservation or an ended quarantine already reads ``free`` before any sweep runs."""

    model_config = ConfigDict(frozen=True)

    value: str
    kind: NumberKind
    org_path: str
    status: NumberStatus
    grade_code: str
    premium_fee: int = Field(description="one-time premium 靓号 fee, fen")
    min_plan_fee: int = Field(description="lowest monthly plan fee allowed, fen")
    holder: str | None = None
    reserved_until: datetime | None = None
    customer_id: str | None = None
    subscription_ref: str | None = None
    assigned_at: datetime | None = None
    quarantine_until: datetime | None = None
    range_id: str | None = None  # the range (TMF685 resource pool) the number belongs to


class RangeOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    org_path: str
    kind: NumberKind
    prefix: str
    start_suffix: str
    end_suffix: str
    first: str
    last: str
    size: int
    name: str
    created_at: datetime
    # Only filled by ``create_range``: how many of the new numbers fell in each grade.
    grades: dict[str, int] = Field(default_factory=dict)


class GradeOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name_zh: str
    name_en: str
    pattern: str
    digits: int
    premium_fee: int
    min_plan_fee: int
    priority: int


class SweepOut(BaseModel):
    """What a sweep changed: the numbers whose stored state it rewrote to ``free``."""

    model_config = ConfigDict(frozen=True)

    count: int
    numbers: list[str]


class PoolOut(BaseModel):
    """A range with its numbers counted by effective state (TMF685 resource pool)."""

    model_config = ConfigDict(frozen=True)

    range: RangeOut
    counts: dict[NumberStatus, int]
