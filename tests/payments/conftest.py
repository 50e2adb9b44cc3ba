"""Fixtures of the payments tests: three billing accounts' ledger accounts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from teleserve.core.uow import UnitOfWork
from teleserve.payments import service as payments
from teleserve.payments.schemas import CustomerAccountSpec

from .helpers import HALL_A, HALL_B


@pytest.fixture
def accounts(make_uow: Callable[..., UnitOfWork]) -> dict[str, str]:
    """BA1 (customer C1, hall A), BA2 (C2, hall B) open; BA9 (C9, hall A) closed."""
    with make_uow() as uow:
        ids = payments.ensure_customer_accounts(
            uow,
            [
                CustomerAccountSpec("BA1", "C1", HALL_A),
                CustomerAccountSpec("BA2", "C2", HALL_B),
                CustomerAccountSpec("BA9", "C9", HALL_A),
            ],
        )
        payments.close_customer_account(uow, "BA9")
        uow.commit()
    return ids
