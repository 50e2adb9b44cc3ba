"""The worker side: the retention timer runs, and the events the service emits are
declared, so none is dead-lettered for want of a handler."""

from __future__ import annotations

from datetime import timedelta

from teleserve.core import worker
from teleserve.terminals import serials, service, tasks
from teleserve.terminals.serials import SerialRecord

from .conftest import GZ_OPS


def test_events_are_declared():
    for topic in (
        service.REGISTERED_TOPIC,
        service.STATUS_CHANGED_TOPIC,
        service.KEY_ROTATED_TOPIC,
    ):
        assert worker.DEFAULT_REGISTRY.is_event(topic)


def test_the_purge_timer_runs_in_the_worker(make_uow, engine, frozen_clock, register, run):
    assert "terminals.purge_serial_records" in {t.name for t in worker.DEFAULT_REGISTRY.timers()}
    register("K1")
    run(GZ_OPS, service.disable, "K1")  # an event in the outbox beside the records
    old = frozen_clock.now() - timedelta(days=40)
    digest = serials.body_digest(b"{}")
    with make_uow() as uow:
        serials.insert_or_get(
            uow.connection,
            [
                SerialRecord("K1", 1, 9002, digest, "00000", '{"alarm_id":"A1"}', old),
                SerialRecord("K1", 2, 9002, digest, "00000", '{"alarm_id":"A2"}', old),
            ],
        )
        uow.commit()
    registry = worker.Registry()
    registry.every(tasks.DAY, name="terminals.purge_serial_records")(tasks.purge_serial_records)
    stats = worker.run_timers(engine, registry=registry)
    assert (stats.timers_run, stats.timers_failed) == (1, 0)
    with make_uow(readonly=True) as uow:
        left = serials.get_records(uow.connection, [("K1", 1), ("K1", 2)])
    assert sorted(left) == [("K1", 2)]  # the highest serial stays
