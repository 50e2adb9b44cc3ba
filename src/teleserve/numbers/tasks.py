"""Timers of the numbers domain (imported by the worker process to register them).

Lapsed reservations and ended quarantines already count as free the moment their time is
up; the sweep only rewrites the stored rows, so the table tells the truth on its own and
the partial scans stay short."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import every, publishes
from teleserve.numbers import service

SWEEP_SECONDS = 60


@every(SWEEP_SECONDS, name="numbers.sweep_pool")
def sweep_pool(uow: UnitOfWork) -> None:
    """Free lapsed reservations and ended quarantines (the worker commits)."""
    service.release_expired(uow)
    service.release_quarantined(uow)


publishes("numbers.assigned", "numbers.released")
