"""A kiosk's REVERSAL of its own payment (``withdraw_terminal_payment``) for the states a
payment recorded through the gateway rarely has: pending (store-and-forward) cash and
card, whose pending transfer is voided."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.uow import UnitOfWork
from teleserve.payments import service as payments
from teleserve.payments.schemas import PaymentRequest

from .helpers import HALL_A, staff

KIOSK = Actor(ActorKind.terminal, "K-1", HALL_A)


def _pending(make_uow: Callable[..., UnitOfWork], channel: str, serial: int) -> None:
    extra = {"source_id": "K-1/BOX-1"} if channel == "kiosk_cash" else {}
    with make_uow(staff()) as uow:
        payments.record_payments(
            uow,
            [
                PaymentRequest(
                    idempotency_key=payments.terminal_key("K-1", serial),
                    channel=channel,
                    amount=5000,
                    billing_account_id="BA1",
                    terminal_id="K-1",
                    terminal_serial=str(serial),
                    org_path=HALL_A,
                    pending=True,
                    **extra,
                )
            ],
        )
        uow.commit()


@pytest.mark.parametrize(
    ("channel", "status", "held_reason"),
    [("kiosk_cash", "held", "reversed"), ("kiosk_card", "reversed", None)],
)
def test_a_pending_payment_withdrawn_by_its_terminal(
    make_uow: Callable[..., UnitOfWork],
    accounts: dict[str, str],
    channel: str,
    status: str,
    held_reason: str | None,
):
    _pending(make_uow, channel, 7)
    with make_uow(KIOSK) as uow:
        payment, reference = payments.withdraw_terminal_payment(uow, "K-1", 7, "timeout")
        uow.commit()
    assert (payment.status, payment.held_reason) == (status, held_reason)
    assert reference.startswith("R")
    with make_uow(staff()) as uow:
        assert payments.customer_balances(uow.connection, ["BA1"]) == {"BA1": 0}
        assert payments.check_ledger(uow) == []
