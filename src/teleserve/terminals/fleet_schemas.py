"""Output (and a few input) shapes of the fleet services: frozen copies, never ORM rows."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class Note(_Frozen):
    value: int  # fen
    count: int


class DeviceStateOut(_Frozen):
    terminal_id: str
    reported_at: datetime
    software_version: str
    uptime_s: int
    device_mode: str
    devices: dict[str, dict[str, str]]
    cash_box_id: str
    cash_box_notes: list[Note]
    cash_box_count: int
    cash_box_capacity: int
    printer_paper: str
    able: bool
    # Seen within 3 × keepalive_s of now.
    online: bool


class BoxInPlaceOut(_Frozen):
    """The cash box in a kiosk as the kiosk last reported it (STATUS_REPORT): what a
    collection round (清机) plans from. ``amount`` is the reported notes' value in fen;
    ``fill`` the share of the box's capacity in use (None when no capacity is known)."""

    terminal_id: str
    org_path: str
    box_id: str
    count: int
    capacity: int
    amount: int
    reported_at: datetime
    online: bool
    fill: float | None
    nearly_full: bool


class AlarmOut(_Frozen):
    alarm_id: str
    terminal_id: str
    org_path: str
    code: str
    device: str
    severity: str
    message: str
    source: str
    status: str
    raised_at: datetime
    first_seen_at: datetime
    last_raised_at: datetime
    occurrences: int
    escalation_level: int
    escalated_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    note: str


class CommandOut(_Frozen):
    command_id: str
    terminal_id: str
    type: str
    status: str
    created_at: datetime
    created_by: str
    sent_at: datetime | None
    deliveries: int
    finished_at: datetime | None
    detail: str


class ConfigVersionOut(_Frozen):
    version: int
    scope: str
    target: str
    config: dict[str, Any]
    note: str
    created_at: datetime
    created_by: str


class EffectiveConfig(_Frozen):
    """A terminal's configuration: the latest ``all`` config overlaid by its site's and
    its own (a shallow merge, the most specific key wins); ``version`` is the highest of
    the three (0: nothing published)."""

    terminal_id: str
    version: int
    config: dict[str, Any]


class CollectionOut(_Frozen):
    collection_id: str
    terminal_id: str
    box_id: str
    new_box_id: str
    operator_id: str
    collected_at: datetime
    recorded_at: datetime
    business_date: date
    expected: list[Note]
    counted: list[Note]
    expected_amount: int
    counted_amount: int
    discrepancy: int
    deposits: int


class FinanceExceptionOut(_Frozen):
    """A surplus or shortage (stored, ``exception_id`` set) or a deposit recorded into an
    already-collected box (``late_deposit``, computed on read: ``exception_id`` is the
    payment's id and ``status`` is always ``open`` — finance settles it through
    payments)."""

    exception_id: str
    kind: str
    terminal_id: str
    box_id: str
    collection_id: str
    amount: int
    status: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str = ""
    payment_id: str | None = None
    serial: int | None = None


class AvailabilityOut(_Frozen):
    """One terminal's day: ``available_s`` seconds seen in service and able to take money,
    ``seen_s`` seconds seen at all, out of ``period_s`` (the part of the day inside the
    terminal's service life, registration to decommissioning, up to now for today);
    ``share`` = available_s / period_s."""

    terminal_id: str
    day: date
    period_s: int
    seen_s: int
    available_s: int
    share: float


class ReconciliationOut(_Frozen):
    reconciliation_id: str
    terminal_id: str
    business_date: date
    uploaded_at: datetime
    entries: int
    matched: int
    missing_on_server: list[int]
    missing_on_terminal: list[int]
    mismatched: list[dict[str, Any]]
