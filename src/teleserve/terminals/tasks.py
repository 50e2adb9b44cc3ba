"""Timers and published events of the terminals domain (imported by the worker process)."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import every, publishes
from teleserve.terminals import service

DAY = 24 * 3600


@every(DAY, name="terminals.purge_serial_records")
def purge_serial_records(uow: UnitOfWork) -> None:
    """Drop non-money serial records past their retention (the worker commits)."""
    service.purge_serial_records(uow)


# Facts for whoever subscribes: the gateway drops its cached view of the terminal, the
# fleet console refreshes (both arrive with later slices).
publishes(service.REGISTERED_TOPIC, service.STATUS_CHANGED_TOPIC, service.KEY_ROTATED_TOPIC)
