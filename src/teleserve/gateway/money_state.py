"""A payment's state as TSP/1 names it.

The payments domain has ``completed``, ``pending``, ``held`` and ``reversed``; TSP/1 has
``completed``, ``pending``, ``held`` and ``voided``. A reversed cash payment is never
``reversed`` in the ledger: its credit moves to suspense and it stays ``held`` with
``held_reason`` ``reversed`` (the notes are in the box, waiting for a refund at a
counter). So the only renaming is ``reversed`` → ``voided``: a card payment reversed at
the kiosk, or held money that staff refunded.
"""

from __future__ import annotations

from teleserve.payments.service import TerminalPayment

VOIDED = "voided"


def tsp_status(status: str) -> str:
    return VOIDED if status == "reversed" else status


def tsp_state(payment: TerminalPayment) -> dict[str, object]:
    """``status`` and, when held, ``held_reason`` — as TXN_STATUS and REVERSAL answer."""
    state: dict[str, object] = {"status": tsp_status(payment.status)}
    if payment.status == "held" and payment.held_reason is not None:
        state["held_reason"] = payment.held_reason
    return state
