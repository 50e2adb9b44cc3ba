"""Availability per terminal per day, from the intervals STATUS_REPORTs leave behind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from teleserve.core.clock import FrozenClock
from teleserve.core.errors import NotFound, ValidationError
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import availability, fleet, service
from teleserve.terminals.fleet_models import interval_table

from .conftest import GZ_OPS, GZ_READER, SZ_OPS
from .fleet_support import report

DAY = date(2026, 11, 25)  # the frozen clock's day in Asia/Shanghai (10:00 there)
DAY_START = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)


def status(make_uow: Callable[..., UnitOfWork], terminal_id: str, body: dict[str, Any]) -> None:
    with make_uow() as uow:
        fleet.record_status_report(uow.connection, terminal_id, body)
        uow.commit()


def spans(make_uow: Callable[..., UnitOfWork], terminal_id: str) -> list[tuple[int, int, bool]]:
    """(start, end, able) in seconds from the first interval's start."""
    t = interval_table
    with make_uow() as uow:
        rows = uow.connection.execute(
            select(t.c.started_at, t.c.ended_at, t.c.able)
            .where(t.c.terminal_id == terminal_id)
            .order_by(t.c.started_at)
        ).all()
    origin = rows[0].started_at
    return [
        (
            int((r.started_at - origin).total_seconds()),
            int((r.ended_at - origin).total_seconds()),
            r.able,
        )
        for r in rows
    ]


def test_reports_become_intervals_and_a_share_of_the_day(
    make_uow, register, run, frozen_clock: FrozenClock
):
    register("K1")
    start = frozen_clock.now()
    for _ in range(11):  # every 60 s for 10 minutes: one interval, 90 s grace at the end
        status(make_uow, "K1", report())
        frozen_clock.advance(seconds=60)
    status(make_uow, "K1", report(acceptor="fault"))  # at 660 s: cut, a new state
    frozen_clock.advance(seconds=3600 - 660)  # silence
    status(make_uow, "K1", report())  # at 3600 s: seen again
    assert spans(make_uow, "K1") == [(0, 660, True), (660, 750, False), (3600, 3690, True)]
    frozen_clock.advance(seconds=400)
    [day] = run(GZ_READER, availability.availability, DAY, terminal_id="K1")
    # The day counts from the registration (at ``start``, 10:00), not from midnight.
    assert start > DAY_START
    assert (day.period_s, day.seen_s, day.available_s) == (4000, 750 + 90, 660 + 90)
    assert day.share == round(750 / 4000, 4)


def test_what_makes_a_terminal_unable(make_uow, register, run):
    register("K1")
    register("K2", site="GZ-K2")
    register("K3", site="GZ-K2")
    register("K4", site="GZ-K2")
    register("K5", site="GZ-K2")
    status(make_uow, "K1", report(acceptor="warning"))  # degraded but taking cash
    status(make_uow, "K2", report(acceptor="offline"))
    status(make_uow, "K3", report(notes=[{"value": 10000, "count": 1000}]))  # box full
    body = report()
    del body["devices"]["cash_acceptor"]
    status(make_uow, "K4", body)  # no cash acceptor reported
    run(GZ_OPS, service.put_out_of_service, "K5")
    status(make_uow, "K5", report())
    able = {
        terminal: run(GZ_READER, fleet.device_state, terminal).able
        for terminal in ("K1", "K2", "K3", "K4", "K5")
    }
    assert able == {"K1": True, "K2": False, "K3": False, "K4": False, "K5": False}


def test_a_sample_across_midnight_is_split_between_the_days(
    make_uow, register, run, frozen_clock: FrozenClock
):
    register("K1")
    frozen_clock.advance(hours=13, minutes=59, seconds=30)  # 23:59:30 in Shanghai
    status(make_uow, "K1", report())
    frozen_clock.advance(hours=1)
    [before] = run(GZ_READER, availability.availability, DAY, terminal_id="K1")
    [after] = run(GZ_READER, availability.availability, DAY + timedelta(days=1), terminal_id="K1")
    # Registered at 10:00: the first day counts 14 hours; the next from midnight.
    assert (before.period_s, before.available_s) == (14 * 3600, 30)
    assert (after.period_s, after.available_s) == (3570, 60)  # 00:59:30 now


def test_listing_is_scoped_and_checked(make_uow, register, run, frozen_clock: FrozenClock):
    register("K1")
    register("K2", site="GZ-K2")
    status(make_uow, "K1", report())
    frozen_clock.advance(seconds=60)
    listed = run(GZ_READER, availability.availability, DAY)
    assert [(a.terminal_id, a.available_s > 0) for a in listed] == [("K1", True), ("K2", False)]
    by_site = run(GZ_READER, availability.availability, DAY, site="GZ-K2")
    assert [a.terminal_id for a in by_site] == ["K2"]
    assert run(SZ_OPS, availability.availability, DAY) == []
    with pytest.raises(NotFound):
        run(SZ_OPS, availability.availability, DAY, terminal_id="K1")
    with pytest.raises(ValidationError):
        run(GZ_READER, availability.availability, DAY + timedelta(days=1))


def test_days_outside_the_service_life_do_not_count(
    make_uow, register, run, frozen_clock: FrozenClock
):
    """A kiosk installed mid-day, then decommissioned two days later: before it existed
    and after it was retired it is neither available nor unavailable."""
    frozen_clock.advance(days=1)  # registered on DAY + 1 at 10:00
    register("K1")
    status(make_uow, "K1", report())
    frozen_clock.advance(hours=14)  # 00:00 on DAY + 2
    status(make_uow, "K1", report())
    frozen_clock.advance(hours=6)  # 06:00: retired
    run(GZ_OPS, service.decommission, "K1", "replaced")
    frozen_clock.advance(days=1)
    days = run(GZ_READER, availability.daily_availability, DAY, DAY + timedelta(days=3))
    assert [(d.day, d.period_s) for d in days] == [
        (DAY + timedelta(days=1), 14 * 3600),
        (DAY + timedelta(days=2), 6 * 3600),
    ]
    assert run(GZ_READER, availability.availability, DAY) == []
    assert run(GZ_READER, availability.availability, DAY + timedelta(days=3)) == []
    # Two samples of 90 s each (three keepalives), out of 20 hours in service.
    assert availability.weighted_share(days) == pytest.approx(180 / (20 * 3600))
    assert availability.weighted_share([]) is None
