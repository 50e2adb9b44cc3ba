"""Every table of every domain, imported so ``Base.metadata`` is complete (Alembic, tests)."""

from __future__ import annotations

import importlib

from teleserve.core.db import Base

MODEL_MODULES = (
    "teleserve.core.audit",
    "teleserve.core.outbox",
    "teleserve.core.worker",
    "teleserve.core.calendar",
    "teleserve.core.sequences",
    "teleserve.iam.models",
    "teleserve.customers.models",
    "teleserve.catalog.models",
    "teleserve.inventory.models",
    "teleserve.numbers.models",
    "teleserve.payments.models",
    "teleserve.notify.models",
    "teleserve.terminals.models",
    "teleserve.terminals.fleet_models",
)


def load_all() -> type[Base]:
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return Base
