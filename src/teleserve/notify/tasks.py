"""Outbox handlers of the notify domain (imported by the worker process to register them)."""

from __future__ import annotations

from teleserve.core.uow import UnitOfWork
from teleserve.core.worker import Message, register
from teleserve.notify import service


def _failed(uow: UnitOfWork, message: Message, reason: str) -> None:
    # The outbox gave up (dead letter): the notification says so, with the reason.
    service.mark_failed(uow, message.payload["message_id"], reason, attempt=message.attempts)


def deliver(uow: UnitOfWork, message: Message) -> None:
    service.deliver(uow, message.payload["message_id"], attempt=message.attempts)


register(service.DELIVER_TOPIC, deliver, name="notify.deliver", on_dead=_failed)
