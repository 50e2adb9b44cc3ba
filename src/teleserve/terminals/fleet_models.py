"""Tables of the kiosk fleet (DESIGN.md sections 3 and 6; PROTOCOL.md "Management
channel"): what each terminal last reported, the intervals availability is computed
from, alarms, remote commands, configuration versions, cash collections (清机), the
finance exceptions they raise, and journal reconciliations.

Every row names its terminal by ``terminal_id`` (the TSP/1 id, unique for ever) rather
than by a foreign key: the management channel writes these rows with the terminal
already authenticated, and on PostgreSQL a key would share-lock the terminal row on every
report. Rows staff list copy the terminal's ``org_path`` for scoping, like every other
owned row.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base, table_of
from teleserve.core.ids import new_id


class Severity(StrEnum):
    """PROTOCOL.md 9002, most severe first."""

    critical = "critical"
    major = "major"
    minor = "minor"
    warning = "warning"


SEVERITY_RANK = {Severity.critical: 4, Severity.major: 3, Severity.minor: 2, Severity.warning: 1}


class AlarmStatus(StrEnum):
    """``open`` (nobody has reacted; escalates after a while), ``acknowledged`` (staff are
    on it; no more escalation), ``cleared`` (over; a new occurrence opens a new alarm)."""

    open = "open"
    acknowledged = "acknowledged"
    cleared = "cleared"


class AlarmSource(StrEnum):
    """Who first raised it: the terminal (9002 ALARM), the server from a STATUS_REPORT,
    or the server itself (MAC-failure floods, a counter behind: ``alarms.raise_alarm``).
    A report that shows a device, the paper or the box fine again clears that condition's
    alarm whoever raised it."""

    terminal = "terminal"
    report = "report"
    server = "server"


class CommandType(StrEnum):
    """PROTOCOL.md 9001 ``commands[].type``."""

    restart = "restart"
    out_of_service = "out_of_service"
    in_service = "in_service"
    reload_config = "reload_config"


class CommandStatus(StrEnum):
    """``pending`` (queued), ``sent`` (in at least one STATUS_REPORT answer, delivered
    again until acknowledged), ``done`` / ``failed`` (COMMAND_ACK), ``cancelled`` (by staff
    before an acknowledgement)."""

    pending = "pending"
    sent = "sent"
    done = "done"
    failed = "failed"
    cancelled = "cancelled"


class ConfigScope(StrEnum):
    """What a published configuration applies to; a terminal's configuration is the
    latest ``all`` one, overlaid by its site's latest, overlaid by its own latest."""

    all = "all"
    site = "site"
    terminal = "terminal"


class ExceptionKind(StrEnum):
    """Finance exceptions of the cash boxes: a collection that counted more (surplus) or
    less (shortage) than expected; a deposit into an already-collected box (computed on
    read, never stored)."""

    surplus = "surplus"
    shortage = "shortage"
    late_deposit = "late_deposit"


class ExceptionStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class DeviceState(Base):
    """A terminal's latest STATUS_REPORT (one row per terminal, replaced by each report)."""

    __tablename__ = "terminal_device_state"

    terminal_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    reported_at: Mapped[datetime]
    software_version: Mapped[str] = mapped_column(String(64))
    uptime_s: Mapped[int] = mapped_column(BigInteger)
    device_mode: Mapped[str] = mapped_column(String(10))
    # {name: {"state": ..., "detail": ...}} as reported (canonical JSON text).
    devices: Mapped[str] = mapped_column(Text)
    cash_box_id: Mapped[str] = mapped_column(String(64))
    cash_box_notes: Mapped[str] = mapped_column(Text)  # canonical notes, JSON text
    cash_box_count: Mapped[int] = mapped_column(BigInteger)
    cash_box_capacity: Mapped[int] = mapped_column(BigInteger)
    printer_paper: Mapped[str] = mapped_column(String(8))
    # Whether this report said the terminal could take money (availability's rule).
    able: Mapped[bool] = mapped_column(Boolean)


class StatusInterval(Base):
    """A stretch of time over which a terminal was seen in one availability state.

    A STATUS_REPORT at ``t`` vouches for its state from ``t`` until ``t + 3 ×
    keepalive_s`` (``ended_at``), unless a later report comes first: then the interval is
    extended (same state) or cut at the later report (the state changed). Time covered by
    no interval is time the terminal was not seen."""

    __tablename__ = "terminal_status_interval"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_id: Mapped[str] = mapped_column(String(16))
    able: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]

    __table_args__ = (Index("ix_terminal_status_interval_span", "terminal_id", "started_at"),)


class Alarm(Base):
    __tablename__ = "terminal_alarm"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_id: Mapped[str] = mapped_column(String(16), index=True)
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    code: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(10))
    message: Mapped[str] = mapped_column(String(1000))
    source: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(12))
    # "terminal_id|device|code" while the alarm is not cleared, NULL after: the unique
    # index makes "one live alarm per code and device" hold under concurrent raises
    # (NULLs never collide, on either database).
    open_key: Mapped[str | None] = mapped_column(String(150), unique=True)
    raised_at: Mapped[datetime]  # when the terminal says it happened (9002 raised_ms)
    first_seen_at: Mapped[datetime]  # when the server recorded it
    last_raised_at: Mapped[datetime]
    occurrences: Mapped[int] = mapped_column(Integer)
    escalation_level: Mapped[int] = mapped_column(Integer)
    escalated_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    cleared_at: Mapped[datetime | None]
    cleared_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(500))

    # The escalation timer looks for open alarms by age.
    __table_args__ = (Index("ix_terminal_alarm_status", "status", "first_seen_at"),)


class Command(Base):
    __tablename__ = "terminal_command"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_id: Mapped[str] = mapped_column(String(16))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    deliveries: Mapped[int] = mapped_column(Integer)
    finished_at: Mapped[datetime | None]
    detail: Mapped[str] = mapped_column(String(1000))

    __table_args__ = (Index("ix_terminal_command_terminal", "terminal_id", "status"),)


class ConfigVersion(Base):
    """A published configuration (a JSON object). Versions are one operator-wide
    sequence, so a terminal's effective version — the highest among the configurations
    that apply to it — grows whenever anything that applies to it is published."""

    __tablename__ = "terminal_config_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    scope: Mapped[str] = mapped_column(String(10))
    # '' for all, the site's org unit id, or the terminal id.
    target: Mapped[str] = mapped_column(String(32))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    config: Mapped[str] = mapped_column(Text)  # canonical JSON object text
    note: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_terminal_config_version_scope", "scope", "target", "version"),)


class CashCollection(Base):
    """One cash box collected (9003 CASH_COLLECTION): what was expected — every note of
    every recorded 2001 for the box, whatever its status — and what was counted."""

    __tablename__ = "terminal_cash_collection"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_id: Mapped[str] = mapped_column(String(16))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    box_id: Mapped[str] = mapped_column(String(64))
    new_box_id: Mapped[str] = mapped_column(String(64))
    operator_id: Mapped[str] = mapped_column(String(64))
    collected_at: Mapped[datetime]  # the terminal's collected_ms
    recorded_at: Mapped[datetime]
    business_date: Mapped[date]
    expected: Mapped[str] = mapped_column(Text)  # canonical notes, JSON text
    counted: Mapped[str] = mapped_column(Text)
    expected_amount: Mapped[int] = mapped_column(BigInteger)
    counted_amount: Mapped[int] = mapped_column(BigInteger)
    discrepancy: Mapped[int] = mapped_column(BigInteger)  # counted - expected, fen
    deposits: Mapped[int] = mapped_column(Integer)

    # A box is collected once (PROTOCOL.md: twice answers 20005).
    __table_args__ = (UniqueConstraint("terminal_id", "box_id"),)


class CollectedDeposit(Base):
    """The deposits a collection's expected figure was summed from. A deposit of the box
    missing here was recorded after the collection: a late deposit for finance."""

    __tablename__ = "terminal_collected_deposit"

    collection_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    payment_id: Mapped[str] = mapped_column(String(32), primary_key=True)


class FinanceException(Base):
    """A surplus or a shortage found by a collection, for finance to resolve."""

    __tablename__ = "terminal_finance_exception"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_id: Mapped[str] = mapped_column(String(16))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    collection_id: Mapped[str] = mapped_column(String(32), index=True)
    box_id: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)  # fen, positive
    status: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(500))


class JournalReconciliation(Base):
    """The result of one JOURNAL_UPLOAD (9006), kept for staff. ``detail`` holds the
    serial lists and, per mismatched serial, both sides."""

    __tablename__ = "terminal_journal_reconciliation"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    terminal_id: Mapped[str] = mapped_column(String(16))
    org_path: Mapped[str] = mapped_column(String(255), index=True)
    business_date: Mapped[date]
    uploaded_at: Mapped[datetime]
    entries: Mapped[int] = mapped_column(Integer)
    matched: Mapped[int] = mapped_column(Integer)
    missing_on_server: Mapped[int] = mapped_column(Integer)
    missing_on_terminal: Mapped[int] = mapped_column(Integer)
    mismatched: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str] = mapped_column(Text)  # canonical JSON text

    __table_args__ = (
        Index("ix_terminal_journal_reconciliation_day", "terminal_id", "business_date"),
    )


device_state_table = table_of(DeviceState)
interval_table = table_of(StatusInterval)
alarm_table = table_of(Alarm)
command_table = table_of(Command)
config_table = table_of(ConfigVersion)
collection_table = table_of(CashCollection)
collected_deposit_table = table_of(CollectedDeposit)
exception_table = table_of(FinanceException)
reconciliation_table = table_of(JournalReconciliation)
