"""Availability per terminal per day: the share of the day the terminal was in service
and able to take money.

**Sampling.** Every STATUS_REPORT (9001) is a sample: the terminal is *able* when its
registry status is ``in_service``, its ``cash_acceptor`` device is ``ok`` or ``warning``
(not ``fault`` / ``offline``, and reported at all), and its cash box is not full. A sample
vouches for its state from the report until ``3 × gateway_keepalive_s`` later — the
protocol's idle limit — unless the next report comes first. Samples become intervals
(``StatusInterval``): a report in the same state extends the current interval, a report
in another state cuts it and starts a new one, a report after a silence starts a new one.
Time covered by no interval is time the terminal was not seen, which counts as not
available. So a kiosk must report at least every ``keepalive_s`` to be counted whole
(the kiosk agent does); a registry status change shows from the next report on.

**A day** is the operator's calendar day (``settings.timezone``); for today, the share is
of the part of the day gone so far.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, select, update

from teleserve.core.clock import utcnow
from teleserve.core.errors import ValidationError
from teleserve.core.i18n import _
from teleserve.core.ids import new_id
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.terminals.fleet_base import visible_terminal
from teleserve.terminals.fleet_models import interval_table
from teleserve.terminals.fleet_schemas import AvailabilityOut
from teleserve.terminals.models import terminal_table

__all__ = ["availability", "daily_availability", "day_bounds", "record_sample", "sample_grace"]


def sample_grace() -> timedelta:
    """How long one report vouches for the terminal: the protocol's idle limit."""
    return timedelta(seconds=3 * get_settings().gateway_keepalive_s)


def record_sample(conn: Connection, terminal_id: str, able: bool, at: datetime) -> None:
    """Fold one STATUS_REPORT's verdict into the terminal's intervals (Core)."""
    t = interval_table
    query = (
        select(t.c.id, t.c.able, t.c.ended_at)
        .where(t.c.terminal_id == terminal_id)
        .order_by(t.c.started_at.desc())
        .limit(1)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update()
    latest = conn.execute(query).first()
    until = at + sample_grace()
    if latest is not None and latest.ended_at >= at:
        if bool(latest.able) == able:
            conn.execute(
                update(t).where(t.c.id == latest.id).values(ended_at=max(until, latest.ended_at))
            )
            return
        conn.execute(update(t).where(t.c.id == latest.id).values(ended_at=at))
    conn.execute(
        t.insert().values(
            id=new_id(), terminal_id=terminal_id, able=able, started_at=at, ended_at=until
        )
    )


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The operator's calendar day as a UTC half-open range."""
    zone = ZoneInfo(get_settings().timezone)
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


def _covered(spans: Iterable[tuple[datetime, datetime]], start: datetime, end: datetime) -> float:
    """Seconds of [start, end) covered by the union of ``spans``."""
    total = 0.0
    reach = start
    for begin, finish in sorted(spans):
        begin, finish = max(begin, reach), min(finish, end)
        if finish > begin:
            total += (finish - begin).total_seconds()
            reach = finish
    return total


def _terminals(uow: UnitOfWork, terminal_id: str | None, site: str | None) -> list[str]:
    if terminal_id is not None:
        return [visible_terminal(uow, terminal_id).terminal_id]
    t = terminal_table
    query = select(t.c.terminal_id).where(uow.actor.scope(t.c.org_path))
    if site is not None:
        query = query.where(t.c.site_id == iam.get_org_unit_by_code(uow, site).id)
    return list(uow.connection.execute(query.order_by(t.c.terminal_id)).scalars())


def availability(
    uow: UnitOfWork, day: date, *, terminal_id: str | None = None, site: str | None = None
) -> list[AvailabilityOut]:
    """Each visible terminal's availability on ``day`` (one terminal, a site's, or all
    the actor sees), by terminal id."""
    uow.actor.require("terminals.read")
    start, end = day_bounds(day)
    now = utcnow()
    if start >= now:
        raise ValidationError(
            _("The day {day} has not begun yet"), code="future_day", day=day.isoformat()
        )
    stop = min(end, now)
    ids = _terminals(uow, terminal_id, site)
    spans: dict[str, list[tuple[datetime, datetime, bool]]] = {i: [] for i in ids}
    t = interval_table
    for part in _chunks(ids):
        rows = uow.connection.execute(
            select(t.c.terminal_id, t.c.started_at, t.c.ended_at, t.c.able).where(
                t.c.terminal_id.in_(list(part)), t.c.started_at < stop, t.c.ended_at > start
            )
        )
        for row in rows:
            spans[row.terminal_id].append((row.started_at, row.ended_at, bool(row.able)))
    period = (stop - start).total_seconds()
    out: list[AvailabilityOut] = []
    for terminal in ids:
        seen = _covered(((b, e) for b, e, _able in spans[terminal]), start, stop)
        able = _covered(((b, e) for b, e, ok in spans[terminal] if ok), start, stop)
        out.append(
            AvailabilityOut(
                terminal_id=terminal,
                day=day,
                period_s=int(period),
                seen_s=int(seen),
                available_s=int(able),
                share=round(able / period, 4) if period > 0 else 0.0,
            )
        )
    return out


def _chunks(values: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for begin in range(0, len(values), size):
        yield values[begin : begin + size]


MAX_DAYS = 92  # a quarter: longer ranges belong to a report, not a page


def daily_availability(
    uow: UnitOfWork,
    first: date,
    last: date,
    *,
    terminal_id: str | None = None,
    site: str | None = None,
) -> list[AvailabilityOut]:
    """``availability`` for every day ``first`` to ``last`` (inclusive; days not begun
    yet are left out), by day then terminal id, from one read of the intervals per 500
    terminals rather than one per day."""
    uow.actor.require("terminals.read")
    if first > last or (last - first).days >= MAX_DAYS:
        raise ValidationError(
            _("A range of days runs forwards and spans at most {maximum} days"),
            code="invalid_day_range",
            maximum=MAX_DAYS,
        )
    now = utcnow()
    days = [
        first + timedelta(days=n)
        for n in range((last - first).days + 1)
        if day_bounds(first + timedelta(days=n))[0] < now
    ]
    if not days:
        return []
    start, stop = day_bounds(days[0])[0], min(day_bounds(days[-1])[1], now)
    ids = _terminals(uow, terminal_id, site)
    spans: dict[str, list[tuple[datetime, datetime, bool]]] = {i: [] for i in ids}
    t = interval_table
    for part in _chunks(ids):
        rows = uow.connection.execute(
            select(t.c.terminal_id, t.c.started_at, t.c.ended_at, t.c.able).where(
                t.c.terminal_id.in_(list(part)), t.c.started_at < stop, t.c.ended_at > start
            )
        )
        for row in rows:
            spans[row.terminal_id].append((row.started_at, row.ended_at, bool(row.able)))
    out: list[AvailabilityOut] = []
    for day in days:
        begin, end = day_bounds(day)
        end = min(end, now)
        period = (end - begin).total_seconds()
        for terminal in ids:
            seen = _covered(((b, e) for b, e, _able in spans[terminal]), begin, end)
            able = _covered(((b, e) for b, e, ok in spans[terminal] if ok), begin, end)
            out.append(
                AvailabilityOut(
                    terminal_id=terminal,
                    day=day,
                    period_s=int(period),
                    seen_s=int(seen),
                    available_s=int(able),
                    share=round(able / period, 4) if period > 0 else 0.0,
                )
            )
    return out
