"""Helpers of the fleet tests: a STATUS_REPORT body, and kiosk payments recorded the way
the gateway's money path records them (payment, cash deposit, serial record)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from teleserve.core.clock import business_date, utcnow
from teleserve.core.uow import UnitOfWork
from teleserve.payments import service as payments
from teleserve.payments.schemas import PaymentRequest
from teleserve.terminals import deposits, serials

from .conftest import GZ


def report(
    *,
    acceptor: str = "ok",
    printer: str = "ok",
    paper: str = "ok",
    box: str = "BOX-1",
    notes: list[dict[str, int]] | None = None,
    capacity: int = 1000,
    version: str = "2.1.0",
    **devices: str,
) -> dict[str, Any]:
    states = {"cash_acceptor": acceptor, "printer": printer, **devices}
    return {
        "software_version": version,
        "uptime_s": 3600,
        "device_mode": "hardware",
        "devices": {name: {"state": state} for name, state in states.items()},
        "cash_box": {
            "box_id": box,
            "notes": notes if notes is not None else [{"value": 10000, "count": 3}],
            "capacity_notes": capacity,
        },
        "printer_paper": paper,
    }


def kiosk_payment(
    make_uow: Callable[..., UnitOfWork],
    terminal_id: str,
    serial: int,
    *,
    box: str | None = "BOX-1",
    notes: list[dict[str, int]] | None = None,
    card_amount: int | None = None,
) -> str:
    """Record a kiosk payment (cash into ``box`` with ``notes``, or a card payment of
    ``card_amount``) as the money path does; returns the payment id. With no billing
    account it is recorded ``held``, which is all these tests need."""
    cash = card_amount is None
    canonical = deposits.canonical_notes(notes or [{"value": 10000, "count": 1}])
    amount = sum(n["value"] * n["count"] for n in canonical) if cash else card_amount
    assert amount is not None
    request = PaymentRequest(
        payments.terminal_key(terminal_id, serial),
        channel="kiosk_cash" if cash else "kiosk_card",
        amount=amount,
        service_number="13800138000",
        source_id=box if cash else None,
        terminal_id=terminal_id,
        terminal_serial=str(serial),
        card_auth_code=None if cash else "A1",
        card_rrn=None if cash else f"R{serial}",
        org_path=GZ,
    )
    with make_uow() as uow:
        outcome = payments.record_payments(uow, [request])[0]
        assert outcome.ok, outcome.error
        assert outcome.payment_id is not None
        now = utcnow()
        if cash:
            assert box is not None
            deposits.record_deposits(
                uow.connection,
                [
                    deposits.Deposit(
                        outcome.payment_id,
                        terminal_id,
                        box,
                        serial,
                        canonical,
                        business_date(now),
                        now,
                    )
                ],
            )
        answer = {"txn_id": outcome.receipt_no, "status": outcome.status}
        serials.insert_or_get(
            uow.connection,
            [
                serials.SerialRecord(
                    terminal_id,
                    serial,
                    2001 if cash else 2002,
                    serials.body_digest(b"{}"),
                    "00000",
                    json.dumps(answer),
                    now,
                )
            ],
        )
        uow.commit()
    return outcome.payment_id


def recorded_answer(
    make_uow: Callable[..., UnitOfWork],
    terminal_id: str,
    serial: int,
    serv_type: int,
    answer: dict[str, Any],
    err_number: str = "00000",
) -> None:
    """A serial record as the dispatcher leaves it (a REVERSAL, an ALARM...)."""
    with make_uow() as uow:
        serials.insert_or_get(
            uow.connection,
            [
                serials.SerialRecord(
                    terminal_id,
                    serial,
                    serv_type,
                    serials.body_digest(b"{}"),
                    err_number,
                    json.dumps(answer),
                    utcnow(),
                )
            ],
        )
        uow.commit()
