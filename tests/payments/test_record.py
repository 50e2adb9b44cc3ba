"""record_payments: the one write path for money."""

from __future__ import annotations

import dataclasses
import re
import threading
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from teleserve.core.actor import SYSTEM
from teleserve.core.audit import AuditRecord
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.outbox import OutboxMessage
from teleserve.payments import service as payments
from teleserve.payments.models import entry_table, payment_table
from teleserve.payments.schemas import PaymentRequest

from .helpers import HALL_A, HALL_B, cash, snapshot, staff


def record_one(make_uow, request: PaymentRequest, actor=SYSTEM) -> payments.PaymentOutcome:
    with make_uow(actor) as uow:
        [outcome] = payments.record_payments(uow, [request])
        uow.commit()
    return outcome


def balance(make_uow, billing_account_id: str) -> payments.AccountBalance:
    with make_uow() as uow:
        return payments.account_balance(uow, billing_account_id)


def system_balance(make_uow, code: str) -> int:
    with make_uow() as uow:
        return payments.system_account_balance(uow, code).balance


def ledger_problems(make_uow) -> list[str]:
    with make_uow() as uow:
        return payments.check_ledger(uow)


def test_a_payment_credits_the_account_and_the_cash_box(make_uow, engine, accounts):
    outcome = record_one(make_uow, cash("tsp:T1:0001", 5000), staff(HALL_A))

    assert outcome.ok and not outcome.replayed
    assert outcome.status == "completed" and outcome.held_reason is None
    assert re.fullmatch(r"R\d{8}\d{8}", outcome.receipt_no or "")
    assert outcome.receipt_no[1:9] == outcome.business_date.replace("-", "")
    assert balance(make_uow, "BA1").balance == 5000
    assert balance(make_uow, "BA1").available == 5000
    assert system_balance(make_uow, "cash_box:BOX1") == 5000
    assert ledger_problems(make_uow) == []
    with make_uow(staff(HALL_A)) as uow:
        view = payments.get_payment(uow, outcome.payment_id)
    assert view.status == "completed" and view.amount == 5000 and view.customer_id == "C1"
    assert view.terminal_id == "T1" and view.terminal_serial == "tsp:T1:0001"
    assert view.created_at.tzinfo is not None
    with engine.connect() as conn:
        entries = conn.execute(select(func.sum(entry_table.c.amount))).scalar_one()
        audit = conn.execute(
            select(AuditRecord.action, AuditRecord.subject_id).order_by(AuditRecord.id)
        ).all()
        topics = conn.execute(select(OutboxMessage.topic, OutboxMessage.payload)).all()
    assert entries == 0
    assert ("payment.recorded", outcome.payment_id) in audit  # chains are written in chain order
    assert [t for t, _ in topics] == ["payments.recorded"]
    assert topics[0][1]["billing_account_id"] == "BA1" and topics[0][1]["amount"] == 5000


@pytest.mark.parametrize(
    ("request_fields", "source_code"),
    [
        (
            {
                "channel": "kiosk_cash",
                "source_id": "BOX7",
                "terminal_id": "T7",
                "terminal_serial": "1",
            },
            "cash_box:BOX7",
        ),
        ({"channel": "counter_cash", "source_id": "DESK3"}, "cash_desk:DESK3"),
        (
            {
                "channel": "kiosk_card",
                "terminal_id": "T7",
                "terminal_serial": "2",
                "card_auth_code": "123456",
                "card_rrn": "000011112222",
            },
            "clearing:card",
        ),
        ({"channel": "web", "external_ref": "ALI-1"}, "clearing:web"),
        ({"channel": "api", "external_ref": "ORDER-9"}, "clearing:api"),
    ],
)
def test_each_channel_takes_money_in_through_its_system_account(
    make_uow, accounts, request_fields, source_code
):
    request = PaymentRequest("k-1", amount=1234, billing_account_id="BA2", **request_fields)
    outcome = record_one(make_uow, request)
    assert outcome.status == "completed"
    assert system_balance(make_uow, source_code) == 1234
    assert balance(make_uow, "BA2").balance == 1234
    assert ledger_problems(make_uow) == []


BAD_AMOUNTS = [0, -1, -5000, 1.5, 100.0, "100", True, None, Decimal("1"), 10**11 + 1]


@pytest.mark.parametrize("amount", BAD_AMOUNTS)
def test_bad_amounts_are_refused_and_nothing_is_written(make_uow, engine, accounts, amount):
    before = snapshot(engine)
    with make_uow() as uow:
        with pytest.raises(ValidationError) as info:
            payments.record_payments(uow, [cash("k-bad", amount)])
        uow.commit()  # even committing after the error writes nothing
    assert info.value.code == "invalid_amount"
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"idempotency_key": ""}, "invalid_idempotency_key"),
        ({"idempotency_key": "   "}, "invalid_idempotency_key"),
        ({"idempotency_key": "k" * 201}, "invalid_idempotency_key"),
        ({"idempotency_key": None}, "invalid_idempotency_key"),
        ({"channel": "cash"}, "invalid_channel"),
        ({"channel": ["kiosk_cash"]}, "invalid_channel"),
        ({"currency": "USD"}, "invalid_currency"),
        ({"billing_account_id": None}, "missing_target"),
        ({"source_id": None}, "missing_field"),
        ({"terminal_serial": None}, "missing_field"),
        ({"terminal_id": "T" * 65}, "invalid_field"),
        ({"billing_account_id": ""}, "invalid_field"),
        ({"service_number": 13800138000}, "invalid_field"),
        ({"org_path": "hall1"}, "invalid_org_path"),
        ({"pending": "yes"}, "invalid_field"),
    ],
)
def test_malformed_requests_are_refused_and_nothing_is_written(
    make_uow, engine, accounts, request_fields, code
):
    values: dict[str, Any] = {
        "idempotency_key": "k-1",
        "channel": "kiosk_cash",
        "amount": 100,
        "billing_account_id": "BA1",
        "source_id": "BOX1",
        "terminal_id": "T1",
        "terminal_serial": "9",
    }
    values.update(request_fields)
    before = snapshot(engine)
    with make_uow() as uow:
        with pytest.raises(ValidationError) as info:
            payments.record_payments(uow, [PaymentRequest(**values)])
        uow.commit()
    assert info.value.code == code
    assert info.value.render("zh-CN") != info.value.render("en")  # translated
    assert snapshot(engine) == before


def test_channel_specific_references_are_required(make_uow, accounts):
    with make_uow() as uow:
        with pytest.raises(ValidationError) as info:
            payments.record_payments(uow, [PaymentRequest("k", "counter_cash", 100, "BA1")])
        assert info.value.params == {"field": "source_id", "channel": "counter_cash"}
        with pytest.raises(ValidationError):
            payments.record_payments(
                uow, [PaymentRequest("k", "kiosk_card", 100, "BA1", terminal_id="T1")]
            )


def test_a_batch_records_the_valid_items_and_answers_errors_for_the_others(
    make_uow, engine, accounts
):
    with make_uow() as uow:
        outcomes = payments.record_payments(
            uow,
            [
                cash("k-1", 100),
                cash("k-2", -3),
                cash("k-3", 300, account="BA2"),
                cash("k-1", 999),  # same key, other body
                cash("k-4", 400, channel="nope"),
            ],
        )
        uow.commit()
    assert [o.ok for o in outcomes] == [True, False, True, False, False]
    assert [o.idempotency_key for o in outcomes] == ["k-1", "k-2", "k-3", "k-1", "k-4"]
    assert outcomes[1].error is not None and outcomes[1].error.code == "invalid_amount"
    assert outcomes[3].error is not None and outcomes[3].error.code == "idempotency_conflict"
    assert isinstance(outcomes[3].error, Conflict)
    assert outcomes[4].error is not None and outcomes[4].error.code == "invalid_channel"
    assert snapshot(engine)["counts"]["payment"] == 2
    assert balance(make_uow, "BA1").balance == 100
    assert balance(make_uow, "BA2").balance == 300
    assert ledger_problems(make_uow) == []


def test_an_empty_batch_does_nothing(make_uow, engine, accounts):
    before = snapshot(engine)
    with make_uow() as uow:
        assert payments.record_payments(uow, []) == []
        uow.commit()
    assert snapshot(engine) == before


def test_a_retry_returns_the_first_answer_and_changes_nothing(make_uow, engine, accounts):
    first = record_one(make_uow, cash("tsp:T1:42", 2500))
    before = snapshot(engine)

    again = record_one(make_uow, cash("tsp:T1:42", 2500))

    assert again.replayed and again.ok
    assert again == dataclasses.replace(first, replayed=True)
    assert (again.payment_id, again.receipt_no, again.status, again.created_at) == (
        first.payment_id,
        first.receipt_no,
        first.status,
        first.created_at,
    )
    assert snapshot(engine) == before  # no payment, entry, audit record or event


def test_a_retry_after_a_reversal_still_returns_the_first_answer(make_uow, engine, accounts):
    first = record_one(make_uow, cash("k-1", 2500))
    with make_uow() as uow:
        payments.reverse_payment(uow, first.payment_id, "wrong account")
        uow.commit()
    before = snapshot(engine)
    again = record_one(make_uow, cash("k-1", 2500))
    assert again.replayed and again.status == "completed" and again.payment_id == first.payment_id
    assert snapshot(engine) == before


def test_the_same_key_with_another_body_is_refused(make_uow, engine, accounts):
    record_one(make_uow, cash("k-1", 2500))
    before = snapshot(engine)
    for other in (
        cash("k-1", 2501),
        cash("k-1", 2500, account="BA2"),
        cash("k-1", 2500, pending=True),
    ):
        with make_uow() as uow, pytest.raises(Conflict) as info:
            payments.record_payments(uow, [other])
        assert info.value.code == "idempotency_conflict"
    assert snapshot(engine) == before


def test_duplicates_inside_one_batch(make_uow, engine, accounts):
    with make_uow() as uow:
        outcomes = payments.record_payments(
            uow, [cash("k-1", 700), cash("k-1", 700), cash("k-1", 800), cash("k-2", 1)]
        )
        uow.commit()
    first, repeat, conflicting, other = outcomes
    assert first.ok and not first.replayed
    assert repeat.ok and repeat.replayed and repeat.payment_id == first.payment_id
    assert conflicting.error is not None and conflicting.error.code == "idempotency_conflict"
    assert other.ok
    assert snapshot(engine)["counts"]["payment"] == 2
    assert balance(make_uow, "BA1").balance == 701


@pytest.mark.parametrize(
    ("account", "extra", "reason"),
    [
        ("NO-SUCH", {}, "unknown_account"),
        ("BA9", {}, "account_closed"),
        (None, {"service_number": "13800138000"}, "unresolved_target"),
    ],
)
def test_money_for_an_unknown_or_closed_account_is_held_in_suspense(
    make_uow, engine, accounts, account, extra, reason
):
    outcome = record_one(make_uow, cash("k-1", 900, account=account, **extra), staff(HALL_B))
    assert outcome.status == "held" and outcome.held_reason == reason
    assert system_balance(make_uow, "suspense") == 900
    assert system_balance(make_uow, "cash_box:BOX1") == 900
    assert balance(make_uow, "BA9").balance == 0
    with make_uow(staff(HALL_A)) as uow:  # the receiving hall (request org_path) sees it
        view = payments.get_payment(uow, outcome.payment_id)
    assert view.org_path == HALL_A and view.customer_id is None
    assert ledger_problems(make_uow) == []


def test_a_pending_payment_is_not_available_until_posted(make_uow, accounts):
    outcome = record_one(make_uow, cash("k-1", 600, pending=True))
    assert outcome.status == "pending"
    figures = balance(make_uow, "BA1")
    assert (figures.balance, figures.pending_credit, figures.available) == (0, 600, 0)
    assert system_balance(make_uow, "cash_box:BOX1") == 0
    with make_uow() as uow:
        box = payments.system_account_balance(uow, "cash_box:BOX1")
    assert box.pending_debit == 600
    assert ledger_problems(make_uow) == []

    with make_uow() as uow:
        view = payments.post_pending(uow, outcome.payment_id)
        uow.commit()
    assert view.status == "completed" and view.completed_at is not None
    figures = balance(make_uow, "BA1")
    assert (figures.balance, figures.pending_credit, figures.available) == (600, 0, 600)
    assert system_balance(make_uow, "cash_box:BOX1") == 600
    assert ledger_problems(make_uow) == []


def test_posting_is_idempotent_and_only_for_pending_payments(make_uow, engine, accounts):
    pending = record_one(make_uow, cash("k-1", 600, pending=True))
    held = record_one(make_uow, cash("k-2", 600, account="NOPE"))
    with make_uow() as uow:
        payments.post_pending(uow, pending.payment_id)
        uow.commit()
    before = snapshot(engine)
    with make_uow() as uow:
        assert payments.post_pending(uow, pending.payment_id).status == "completed"
        uow.commit()
    assert snapshot(engine) == before
    with make_uow() as uow, pytest.raises(Conflict) as info:
        payments.post_pending(uow, held.payment_id)
    assert info.value.code == "invalid_payment_state"


def test_posting_to_an_account_closed_meanwhile_holds_the_money(make_uow, accounts):
    pending = record_one(make_uow, cash("k-1", 600, pending=True))
    with make_uow() as uow:
        payments.close_customer_account(uow, "BA1")
        uow.commit()
    with make_uow() as uow:
        view = payments.post_pending(uow, pending.payment_id)
        uow.commit()
    assert view.status == "held" and view.held_reason == "account_closed"
    assert balance(make_uow, "BA1").pending_credit == 0
    assert system_balance(make_uow, "suspense") == 600
    assert ledger_problems(make_uow) == []


def test_receipt_numbers_are_unique_and_increasing(make_uow, accounts):
    receipts: list[str] = []
    for batch in range(3):
        with make_uow() as uow:
            outcomes = payments.record_payments(
                uow, [cash(f"k-{batch}-{i}", 10 + i) for i in range(1 + batch * 3)]
            )
            uow.commit()
        receipts += [o.receipt_no for o in outcomes]
    assert len(set(receipts)) == len(receipts) == 1 + 4 + 7
    serials = [int(r[9:]) for r in receipts]
    assert serials == sorted(serials)


def test_a_large_batch_is_consistent(make_uow, engine, accounts):
    requests = [
        cash(f"k-{i}", 100 + i, account=("BA1", "BA2", "BA9", "NOPE")[i % 4], pending=i % 7 == 0)
        for i in range(200)
    ]
    with make_uow() as uow:
        outcomes = payments.record_payments(uow, requests)
        uow.commit()
    assert all(o.ok for o in outcomes)
    counts = snapshot(engine)["counts"]
    assert counts["payment"] == counts["payment_idempotency"] == counts["ledger_transfer"] == 200
    assert counts["outbox_message"] == 200
    with engine.connect() as conn:
        recorded = conn.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "payment.recorded")
        )
    assert recorded == 200
    expected_ba1 = sum(
        r.amount for r in requests if r.billing_account_id == "BA1" and not r.pending
    )
    assert balance(make_uow, "BA1").balance == expected_ba1
    assert system_balance(make_uow, "cash_box:BOX1") == sum(
        r.amount for r in requests if not (r.pending and r.billing_account_id in ("BA1", "BA2"))
    )
    assert ledger_problems(make_uow) == []


def test_recording_needs_the_permission(make_uow, engine, accounts):
    before = snapshot(engine)
    with make_uow(staff(HALL_A, frozenset({"payments.read"}))) as uow:
        with pytest.raises(PermissionDenied):
            payments.record_payments(uow, [cash("k-1")])
        uow.commit()
    assert snapshot(engine) == before


def test_payments_are_visible_to_the_owner_and_the_receiving_organisation(make_uow, accounts):
    # Paid at hall A for BA2, a customer of hall B.
    outcome = record_one(make_uow, cash("k-1", 100, account="BA2"), staff(HALL_A))
    for org in (HALL_A, HALL_B, "/op/", "/"):
        with make_uow(staff(org)) as uow:
            assert payments.get_payment(uow, outcome.payment_id).id == outcome.payment_id
            assert payments.get_payment_by_key(uow, "k-1").id == outcome.payment_id
    with make_uow(staff("/op/gd/fs/")) as uow:
        with pytest.raises(NotFound):
            payments.get_payment(uow, outcome.payment_id)
        with pytest.raises(NotFound):
            payments.get_payment_by_key(uow, "k-1")
        with pytest.raises(NotFound):
            payments.get_payment(uow, "no-such-id")


def test_concurrent_retries_of_one_request_record_one_payment(make_uow, engine, accounts):
    """Eight clients send the same request at once: one payment, eight identical answers."""
    barrier = threading.Barrier(8)
    answers: list[payments.PaymentOutcome] = []
    failures: list[BaseException] = []

    def client() -> None:
        try:
            barrier.wait()
            answers.append(record_one(make_uow, cash("tsp:T1:77", 3300)))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len({a.payment_id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(payment_table)) == 1
    assert balance(make_uow, "BA1").balance == 3300
    assert ledger_problems(make_uow) == []


def test_in_a_batch_the_stored_first_request_decides(make_uow, engine, accounts):
    """A key already recorded: its retries in a later batch replay it, whatever their order,
    and other bodies are refused — even when one of those comes first in the batch."""
    first = record_one(make_uow, cash("k-1", 100))
    before = snapshot(engine)
    with make_uow() as uow:
        outcomes = payments.record_payments(uow, [cash("k-1", 101), cash("k-1", 100)])
        uow.commit()
    conflicting, retry = outcomes
    assert conflicting.error is not None and conflicting.error.code == "idempotency_conflict"
    assert retry.ok and retry.replayed and retry.payment_id == first.payment_id
    assert snapshot(engine) == before


def test_the_stored_answer_holds_every_field_of_an_outcome():
    outcome = payments.PaymentOutcome(
        "k",
        "p",
        "R1",
        "held",
        "unknown_account",
        5,
        "CNY",
        "BA",
        "2026-11-25",
        "2026-11-25T02:00:00+00:00",
    )
    transient = {"idempotency_key", "replayed", "error"}
    assert set(outcome.answer()) == {f.name for f in dataclasses.fields(outcome)} - transient
    assert payments.PaymentOutcome.from_answer("k", outcome.answer()) == dataclasses.replace(
        outcome, replayed=True
    )
