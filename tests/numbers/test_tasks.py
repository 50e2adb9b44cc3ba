"""The worker timer that sweeps the pool."""

from __future__ import annotations

from sqlalchemy import select

from teleserve.core import worker
from teleserve.numbers import service, tasks
from teleserve.numbers.models import PoolNumber

from .conftest import card, sz_number


def test_sweep_timer_is_registered_and_frees_lapsed_rows(pool, engine, frozen_clock):
    assert "numbers.sweep_pool" in {t.name for t in worker.DEFAULT_REGISTRY.timers()}
    pool.run(service.reserve, sz_number(1), "s:1", minutes=1)
    pool.run(service.assign, sz_number(2), holder="x", id_index=card(1), customer_id="C")
    pool.run(service.release, sz_number(2))
    frozen_clock.advance(days=91)
    registry = worker.Registry()
    registry.every(tasks.SWEEP_SECONDS, name="numbers.sweep_pool")(tasks.sweep_pool)
    stats = worker.run_timers(engine, registry=registry)
    assert (stats.timers_run, stats.timers_failed) == (1, 0)
    with engine.connect() as conn:
        statuses = dict(
            conn.execute(
                select(PoolNumber.value, PoolNumber.status).where(
                    PoolNumber.value.in_([sz_number(1), sz_number(2)])
                )
            ).all()
        )
    assert statuses == {sz_number(1): "free", sz_number(2): "free"}
