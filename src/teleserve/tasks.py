"""Every domain's outbox handlers and timers, imported so the worker knows them all."""

from __future__ import annotations

import importlib

TASK_MODULES = (
    "teleserve.core.timers",
    "teleserve.catalog.tasks",
    "teleserve.customers.tasks",
    "teleserve.iam.tasks",
    "teleserve.inventory.tasks",
    "teleserve.notify.tasks",
    "teleserve.numbers.tasks",
    "teleserve.payments.tasks",
    "teleserve.terminals.tasks",
)


def load_all() -> None:
    for module in TASK_MODULES:
        importlib.import_module(module)
