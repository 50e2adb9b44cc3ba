"""Time: UTC everywhere in storage; the operator's zone for business dates.

``clock`` is the one source of "now" so tests can move time (lockouts, expiries, SLAs)
without sleeping.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock(Clock):
    """A clock that only moves when told to (tests)."""

    def __init__(self, at: datetime) -> None:
        self._at = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._at

    def advance(self, **delta: float) -> None:
        self._at += timedelta(**delta)


clock: Clock = Clock()


def set_clock(new: Clock) -> Clock:
    """Install ``new`` as the process clock; returns the previous one."""
    global clock
    previous, clock = clock, new
    return previous


def utcnow() -> datetime:
    return clock.now()


def as_utc(value: datetime) -> datetime:
    """Aware UTC datetime; naive values (SQLite returns them) are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def business_date(at: datetime | None = None, tz: str = "Asia/Shanghai") -> date:
    """The operator's calendar date at ``at`` (default now)."""
    return as_utc(at or utcnow()).astimezone(ZoneInfo(tz)).date()
