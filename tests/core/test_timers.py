"""The worker's timers: the daily audit checkpoint and the domains' sweeps all run."""

from __future__ import annotations

from teleserve import tasks
from teleserve.core import audit
from teleserve.core.worker import registry, run_timers


def test_worker_timers_include_the_daily_checkpoint_and_run(make_uow, engine, settings):
    tasks.load_all()
    names = {timer.name for timer in registry.timers()}
    assert {
        "audit.daily_checkpoint",
        "numbers.sweep_pool",
        "customers.purge_expired",
        "iam.purge_expired_tokens",
    } <= names
    with make_uow() as uow:
        uow.audit("thing.created", "thing", "T1")
        uow.commit()
    stats = run_timers(engine)
    assert stats.timers_failed == 0 and stats.timers_run >= 4
    written = audit.latest_checkpoint(settings.audit_checkpoint_dir)
    assert written is not None
    assert audit.verify(engine, settings.audit_checkpoint_dir, settings.audit_signing_key_file).ok
