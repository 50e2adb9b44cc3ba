"""Outbox topics of the payments domain (imported by the worker process).

Lifting a credit bar after a payment (inventory.on_account_payment) subscribes to these
once the order and billing flows that own that decision exist; until then they are
published for other systems only.
"""

from __future__ import annotations

from teleserve.core.worker import publishes

publishes(
    "payments.recorded",
    "payments.posted",
    "payments.held",
    "payments.settled",
    "payments.reversed",
    "payments.refunded",
)
