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

**A day** is the operator's calendar day (``settings.timezone``), cut to the terminal's
service life: from its registration to its decommissioning, and for today up to now. A
kiosk installed at noon is counted from noon, not as unavailable all morning; a day
wholly outside the service life has no row. Shares over several terminal-days weigh each
by its length (``weighted_share``).
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
from teleserve.terminals.models import TerminalStatus, terminal_table

__all__ = [
    "availability",
    "daily_availability",
    "day_bounds",
    "record_sample",
    "sample_grace",
    "weighted_share",
]

_DECOMMISSIONED = TerminalStatus.decommissioned.value


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


# A terminal's service life: from its registration to its decommissioning (None while it
# is not decommissioned). Time outside it is neither available nor unavailable.
_Life = tuple[datetime, datetime | None]
_Spans = dict[str, list[tuple[datetime, datetime, bool]]]


def _lives(uow: UnitOfWork, terminal_id: str | None, site: str | None) -> dict[str, _Life]:
    """The visible terminals (one, a site's, or all the actor sees), by terminal id, with
    their service lives."""
    t = terminal_table
    query = select(t.c.terminal_id, t.c.created_at, t.c.status, t.c.status_changed_at)
    if terminal_id is not None:
        visible_terminal(uow, terminal_id)  # NotFound outside the actor's subtree
        query = query.where(t.c.terminal_id == terminal_id)
    else:
        query = query.where(uow.actor.scope(t.c.org_path))
        if site is not None:
            query = query.where(t.c.site_id == iam.get_org_unit_by_code(uow, site).id)
    return {
        row.terminal_id: (
            row.created_at,
            row.status_changed_at if row.status == _DECOMMISSIONED else None,
        )
        for row in uow.connection.execute(query.order_by(t.c.terminal_id))
    }


def _spans(conn: Connection, ids: Sequence[str], start: datetime, stop: datetime) -> _Spans:
    """Each terminal's intervals overlapping [start, stop)."""
    spans: _Spans = {i: [] for i in ids}
    i = interval_table
    for part in _chunks(ids):
        for row in conn.execute(
            select(i.c.terminal_id, i.c.started_at, i.c.ended_at, i.c.able).where(
                i.c.terminal_id.in_(list(part)), i.c.started_at < stop, i.c.ended_at > start
            )
        ):
            spans[row.terminal_id].append((row.started_at, row.ended_at, bool(row.able)))
    return spans


def _terminal_day(
    terminal_id: str,
    day: date,
    life: _Life,
    spans: list[tuple[datetime, datetime, bool]],
    now: datetime,
) -> AvailabilityOut | None:
    """One terminal's day, over the part of it inside the terminal's service life and
    before ``now``; None when no part of the day is (registered later, decommissioned
    before): a kiosk installed at noon is not "unavailable" all morning."""
    day_start, day_end = day_bounds(day)
    registered, decommissioned = life
    begin = max(day_start, registered)
    end = min(day_end, now, decommissioned or day_end)
    if end <= begin:
        return None
    period = (end - begin).total_seconds()
    seen = _covered(((b, e) for b, e, _able in spans), begin, end)
    able = _covered(((b, e) for b, e, ok in spans if ok), begin, end)
    return AvailabilityOut(
        terminal_id=terminal_id,
        day=day,
        period_s=int(period),
        seen_s=int(seen),
        available_s=int(able),
        share=round(able / period, 4),
    )


def _days_for(
    uow: UnitOfWork, days: Sequence[date], terminal_id: str | None, site: str | None
) -> list[AvailabilityOut]:
    """``_terminal_day`` for every visible terminal and day, by day then terminal id, from
    one read of the terminals and one of their intervals per 500 terminals."""
    now = utcnow()
    lives = _lives(uow, terminal_id, site)
    start, stop = day_bounds(days[0])[0], min(day_bounds(days[-1])[1], now)
    spans = _spans(uow.connection, list(lives), start, stop)
    out: list[AvailabilityOut] = []
    for day in days:
        for terminal, life in lives.items():
            row = _terminal_day(terminal, day, life, spans[terminal], now)
            if row is not None:
                out.append(row)
    return out


def availability(
    uow: UnitOfWork, day: date, *, terminal_id: str | None = None, site: str | None = None
) -> list[AvailabilityOut]:
    """Each visible terminal's availability on ``day`` (one terminal, a site's, or all
    the actor sees), by terminal id. A terminal not in service at any time of the day
    (registered after it, decommissioned before it) has no row."""
    uow.actor.require("terminals.read")
    if day_bounds(day)[0] >= utcnow():
        raise ValidationError(
            _("The day {day} has not begun yet"), code="future_day", day=day.isoformat()
        )
    return _days_for(uow, [day], terminal_id, site)


def weighted_share(rows: Iterable[AvailabilityOut]) -> float | None:
    """Availability over several terminal-days: seconds available over seconds in
    service, so a terminal's first half day weighs half a day (None for no rows)."""
    period = available = 0
    for row in rows:
        period += row.period_s
        available += row.available_s
    return available / period if period else None


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
    yet are left out, and each terminal's days outside its service life), by day then
    terminal id."""
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
    return _days_for(uow, days, terminal_id, site)
