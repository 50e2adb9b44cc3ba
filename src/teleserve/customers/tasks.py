"""Timers of the customers domain (imported by the worker process)."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import every
from teleserve.customers import service


@every(3600, name="customers.purge_expired")
def purge_expired(uow: UnitOfWork) -> None:
    """Drop ended customer sessions and spent one-time codes after a week."""
    service.purge_expired(uow)
