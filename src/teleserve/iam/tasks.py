"""Timers of the iam domain (imported by the worker process)."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import every
from teleserve.iam import service


@every(3600, name="iam.purge_expired_tokens")
def purge_expired_tokens(uow: UnitOfWork) -> None:
    service.purge_expired_tokens(uow)
