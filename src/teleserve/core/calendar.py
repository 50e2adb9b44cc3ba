"""The operator's business calendar: working days, public holidays and make-up working
days (调休 — weekend days that are worked to bridge a holiday).

A day is a working day when an override says ``workday``, or when it is Monday–Friday and
no override says ``holiday``. SLA clocks count business hours on working days in the
operator's time zone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Date, String, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.db import Base, table_of
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _

HOLIDAY = "holiday"
WORKDAY = "workday"


class CalendarDay(Base):
    __tablename__ = "calendar_day"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(100))


# Mainland China public holidays and make-up working days for 2026, entered from the State
# Council General Office's holiday notice for 2026 (check them against the published notice
# before relying on them). Operators edit their calendar; this is only what a fresh
# installation starts with.
CN_2026: tuple[tuple[str, str, str], ...] = (
    ("2026-01-01", HOLIDAY, "元旦"),
    ("2026-01-02", HOLIDAY, "元旦"),
    ("2026-01-03", HOLIDAY, "元旦"),
    ("2026-01-04", WORKDAY, "元旦调休上班"),
    *((f"2026-02-{d:02d}", HOLIDAY, "春节") for d in range(15, 24)),
    ("2026-02-14", WORKDAY, "春节调休上班"),
    ("2026-02-28", WORKDAY, "春节调休上班"),
    ("2026-04-04", HOLIDAY, "清明节"),
    ("2026-04-05", HOLIDAY, "清明节"),
    ("2026-04-06", HOLIDAY, "清明节"),
    *((f"2026-05-0{d}", HOLIDAY, "劳动节") for d in range(1, 6)),
    ("2026-05-09", WORKDAY, "劳动节调休上班"),
    ("2026-06-19", HOLIDAY, "端午节"),
    ("2026-06-20", HOLIDAY, "端午节"),
    ("2026-06-21", HOLIDAY, "端午节"),
    ("2026-09-25", HOLIDAY, "中秋节"),
    ("2026-09-26", HOLIDAY, "中秋节"),
    ("2026-09-27", HOLIDAY, "中秋节"),
    *((f"2026-10-0{d}", HOLIDAY, "国庆节") for d in range(1, 8)),
    ("2026-09-20", WORKDAY, "国庆节调休上班"),
    ("2026-10-10", WORKDAY, "国庆节调休上班"),
)


@dataclass
class BusinessCalendar:
    overrides: dict[date, str] = field(default_factory=dict)
    tz: str = "Asia/Shanghai"
    day_start: time = time(9, 0)
    day_end: time = time(18, 0)

    def is_working_day(self, day: date) -> bool:
        kind = self.overrides.get(day)
        if kind is not None:
            return kind == WORKDAY
        return day.weekday() < 5

    def add_working_days(self, day: date, count: int) -> date:
        """The working day ``count`` working days after ``day`` (``count`` ≥ 0)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        current = day
        while count > 0:
            current += timedelta(days=1)
            if self.is_working_day(current):
                count -= 1
        return current

    def _local(self, at: datetime) -> datetime:
        return at.astimezone(ZoneInfo(self.tz))

    def business_seconds_between(self, start: datetime, end: datetime) -> int:
        """Seconds of business hours on working days between two instants."""
        if end <= start:
            return 0
        zone = ZoneInfo(self.tz)
        total = 0.0
        day = self._local(start).date()
        last = self._local(end).date()
        while day <= last:
            if self.is_working_day(day):
                open_at = datetime.combine(day, self.day_start, zone)
                close_at = datetime.combine(day, self.day_end, zone)
                lo, hi = max(open_at, start), min(close_at, end)
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return int(total)

    def add_business_seconds(self, start: datetime, seconds: int) -> datetime:
        """The instant ``seconds`` of business time after ``start`` (an SLA deadline)."""
        zone = ZoneInfo(self.tz)
        remaining = float(seconds)
        cursor = self._local(start)
        while True:
            day = cursor.date()
            if self.is_working_day(day):
                open_at = datetime.combine(day, self.day_start, zone)
                close_at = datetime.combine(day, self.day_end, zone)
                lo = max(open_at, cursor)
                available = (close_at - lo).total_seconds()
                if available > 0:
                    if remaining <= available:
                        return (lo + timedelta(seconds=remaining)).astimezone(UTC)
                    remaining -= available
            cursor = datetime.combine(day + timedelta(days=1), time(0, 0), zone)


def load_calendar(conn: Connection, tz: str = "Asia/Shanghai") -> BusinessCalendar:
    rows = conn.execute(select(table_of(CalendarDay))).all()
    return BusinessCalendar({r.day: r.kind for r in rows}, tz=tz)


def set_day(conn: Connection, day: date, kind: str, name: str) -> None:
    """Declare ``day`` a holiday or a (make-up) working day, replacing any earlier entry."""
    if kind not in (HOLIDAY, WORKDAY):
        raise ValidationError(_("A calendar day is a holiday or a workday, not {kind}"), kind=kind)
    table = table_of(CalendarDay)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(day=day, kind=kind, name=name)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.day], set_={"kind": kind, "name": name}
        )
    )


def seed_default_calendar(conn: Connection) -> int:
    for day, kind, name in CN_2026:
        set_day(conn, date.fromisoformat(day), kind, name)
    return len(CN_2026)
