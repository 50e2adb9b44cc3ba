"""Reversal, settlement of held money, ledger accounts, balances and the ledger check."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, insert, select, update

from teleserve.core.actor import SYSTEM
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.outbox import OutboxMessage
from teleserve.payments import ledger
from teleserve.payments import service as payments
from teleserve.payments.ledger import account_id_for
from teleserve.payments.models import (
    account_table,
    entry_table,
    idempotency_table,
    payment_table,
    transfer_table,
)
from teleserve.payments.schemas import CustomerAccountSpec

from .helpers import HALL_A, HALL_B, cash, snapshot, staff


def record(make_uow, request, actor=SYSTEM) -> payments.PaymentOutcome:
    with make_uow(actor) as uow:
        [outcome] = payments.record_payments(uow, [request])
        uow.commit()
    return outcome


def figures(make_uow, billing_account_id: str) -> tuple[int, int]:
    with make_uow() as uow:
        f = payments.account_balance(uow, billing_account_id)
    return f.balance, f.pending_credit


def system(make_uow, code: str) -> int:
    with make_uow() as uow:
        return payments.system_account_balance(uow, code).balance


def problems(make_uow) -> list[str]:
    with make_uow() as uow:
        return payments.check_ledger(uow)


def reverse(make_uow, payment_id: str, reason: str = "customer asked", actor=SYSTEM):
    with make_uow(actor) as uow:
        view = payments.reverse_payment(uow, payment_id, reason)
        uow.commit()
    return view


def settle(make_uow, payment_id: str, billing_account_id: str, actor=SYSTEM):
    with make_uow(actor) as uow:
        view = payments.settle_held(uow, payment_id, billing_account_id)
        uow.commit()
    return view


# -- reversal --------------------------------------------------------------------------


def test_reversing_a_completed_payment_gives_the_money_back_once(make_uow, engine, accounts):
    keep = record(make_uow, cash("k-0", 100))
    paid = record(make_uow, cash("k-1", 4000))
    view = reverse(make_uow, paid.payment_id, "wrong number")
    assert view.status == "reversed" and view.reversal_reason == "wrong number"
    assert view.reversed_at is not None
    assert figures(make_uow, "BA1") == (100, 0)
    assert system(make_uow, "cash_box:BOX1") == 100
    assert problems(make_uow) == []

    before = snapshot(engine)
    assert reverse(make_uow, paid.payment_id, "again").status == "reversed"
    assert snapshot(engine) == before  # idempotent: nothing written, not even audit
    with engine.connect() as conn:
        topics = conn.execute(select(OutboxMessage.topic)).scalars().all()
    assert topics.count("payments.reversed") == 1
    assert keep.status == "completed"


def test_reversing_a_pending_payment_voids_it(make_uow, engine, accounts):
    paid = record(make_uow, cash("k-1", 4000, pending=True))
    assert reverse(make_uow, paid.payment_id).status == "reversed"
    assert figures(make_uow, "BA1") == (0, 0)
    with engine.connect() as conn:
        statuses = conn.execute(select(transfer_table.c.status)).scalars().all()
        entries = conn.execute(select(entry_table.c.id)).all()
    assert statuses == ["voided"] and entries == []
    assert problems(make_uow) == []


def test_reversing_held_money_empties_suspense(make_uow, accounts):
    held = record(make_uow, cash("k-1", 4000, account="NOPE"))
    assert reverse(make_uow, held.payment_id).status == "reversed"
    assert system(make_uow, "suspense") == 0
    assert system(make_uow, "cash_box:BOX1") == 0
    assert problems(make_uow) == []


@pytest.mark.parametrize("reason", ["", "   ", None, "x" * 201, 42])
def test_a_reversal_needs_a_reason(make_uow, engine, accounts, reason):
    paid = record(make_uow, cash("k-1", 4000))
    before = snapshot(engine)
    with make_uow() as uow, pytest.raises(ValidationError):
        payments.reverse_payment(uow, paid.payment_id, reason)
    assert snapshot(engine) == before


def test_reversal_needs_permission_and_scope(make_uow, accounts):
    paid = record(make_uow, cash("k-1", 4000))  # BA1 of hall A, received at hall A
    with (
        make_uow(staff(HALL_A, frozenset({"payments.read"}))) as uow,
        pytest.raises(PermissionDenied),
    ):
        payments.reverse_payment(uow, paid.payment_id, "r")
    with make_uow(staff(HALL_B)) as uow:
        with pytest.raises(NotFound):
            payments.reverse_payment(uow, paid.payment_id, "r")
        with pytest.raises(NotFound):
            payments.reverse_payment(uow, "nope", "r")
    assert reverse(make_uow, paid.payment_id, actor=staff(HALL_A)).status == "reversed"


# -- held money ------------------------------------------------------------------------


def test_settling_held_money_credits_the_account(make_uow, engine, accounts):
    held = record(make_uow, cash("k-1", 900, account="NOPE"), staff(HALL_A))
    view = settle(make_uow, held.payment_id, "BA2")
    assert view.status == "completed" and view.settled_at is not None
    assert view.billing_account_id == "BA2" and view.customer_id == "C2"
    assert view.org_path == HALL_B and view.received_org_path == HALL_A
    assert view.held_reason == "unknown_account"  # kept as history
    assert figures(make_uow, "BA2") == (900, 0)
    assert system(make_uow, "suspense") == 0
    assert problems(make_uow) == []

    before = snapshot(engine)
    assert settle(make_uow, held.payment_id, "BA2").status == "completed"
    assert snapshot(engine) == before
    with make_uow() as uow, pytest.raises(Conflict) as info:
        payments.settle_held(uow, held.payment_id, "BA1")
    assert info.value.code == "already_settled"

    # A settled payment can still be reversed: the money leaves BA2.
    reverse(make_uow, held.payment_id)
    assert figures(make_uow, "BA2") == (0, 0)
    assert system(make_uow, "suspense") == 0
    assert system(make_uow, "cash_box:BOX1") == 0
    assert problems(make_uow) == []


def test_settlement_refusals(make_uow, engine, accounts):
    held = record(make_uow, cash("k-1", 900, account="NOPE"))
    paid = record(make_uow, cash("k-2", 900))
    before = snapshot(engine)
    cases = [
        (held.payment_id, "BA9", Conflict, "account_closed"),
        (held.payment_id, "NO-SUCH", NotFound, "billing_account_not_found"),
        (held.payment_id, "", ValidationError, "invalid_field"),
        (paid.payment_id, "BA2", Conflict, "invalid_payment_state"),
        ("nope", "BA2", NotFound, "payment_not_found"),
    ]
    for payment_id, target, error, code in cases:
        with make_uow() as uow, pytest.raises(error) as info:
            payments.settle_held(uow, payment_id, target)
        assert info.value.code == code
    # Staff of hall A cannot credit a hall B account (it answers like a missing one).
    with make_uow(staff(HALL_A)) as uow, pytest.raises(NotFound):
        payments.settle_held(uow, held.payment_id, "BA2")
    with (
        make_uow(staff(HALL_A, frozenset({"payments.read"}))) as uow,
        pytest.raises(PermissionDenied),
    ):
        payments.settle_held(uow, held.payment_id, "BA1")
    assert snapshot(engine) == before


# -- accounts --------------------------------------------------------------------------


def test_ensuring_accounts_in_a_batch_is_idempotent(make_uow, engine):
    specs = [CustomerAccountSpec(f"BA{i}", f"C{i}", HALL_A) for i in range(1200)]
    with make_uow() as uow:
        ids = payments.ensure_customer_accounts(uow, specs)
        uow.commit()
    assert len(ids) == 1200 and ids["BA7"] == account_id_for("customer:BA7")
    before = snapshot(engine)
    with make_uow() as uow:
        assert payments.ensure_customer_accounts(uow, specs[:10]) == {
            s.billing_account_id: ids[s.billing_account_id] for s in specs[:10]
        }
        uow.commit()
    assert snapshot(engine) == before  # no second audit record either
    assert before["counts"]["ledger_account"] == 1200
    assert before["counts"]["audit_record"] == 1200


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        (CustomerAccountSpec("BA1", "C-other", HALL_A), Conflict),
        (CustomerAccountSpec("", "C1", HALL_A), ValidationError),
        (CustomerAccountSpec("B" * 33, "C1", HALL_A), ValidationError),
        (CustomerAccountSpec("BA5", "", HALL_A), ValidationError),
        (CustomerAccountSpec("BA5", "C5", "op"), ValidationError),
        (CustomerAccountSpec("BA5", "C5", HALL_A, currency="USD"), ValidationError),
    ],
)
def test_bad_account_specs_write_nothing(make_uow, engine, accounts, spec, error):
    before = snapshot(engine)
    with make_uow() as uow, pytest.raises(error):
        payments.ensure_customer_accounts(uow, [CustomerAccountSpec("BA6", "C6", HALL_A), spec])
        uow.commit()
    assert snapshot(engine) == before


def test_opening_accounts_needs_customers_write_inside_the_subtree(make_uow, engine):
    with (
        make_uow(staff(HALL_A, frozenset({"payments.record"}))) as uow,
        pytest.raises(PermissionDenied),
    ):
        payments.open_customer_account(uow, "BA1", "C1", HALL_A)
    with make_uow(staff(HALL_A, frozenset({"customers.write"}))) as uow:
        with pytest.raises(PermissionDenied) as info:
            payments.open_customer_account(uow, "BA1", "C1", HALL_B)
        assert info.value.code == "outside_organisation"
        account_id = payments.open_customer_account(uow, "BA1", "C1", HALL_A)
        uow.commit()
    assert account_id == account_id_for("customer:BA1")


def test_closing_an_account_holds_later_payments(make_uow, engine, accounts):
    record(make_uow, cash("k-1", 100))
    with make_uow() as uow:
        payments.close_customer_account(uow, "BA1")
        uow.commit()
    before = snapshot(engine)
    with make_uow() as uow:
        payments.close_customer_account(uow, "BA1")  # again: nothing
        uow.commit()
    assert snapshot(engine) == before
    with make_uow() as uow:
        assert payments.account_balance(uow, "BA1").status == "closed"
    assert record(make_uow, cash("k-2", 100)).held_reason == "account_closed"
    assert figures(make_uow, "BA1") == (100, 0)  # the old balance waits for its refund
    with make_uow(staff(HALL_B, frozenset({"customers.write"}))) as uow, pytest.raises(NotFound):
        payments.close_customer_account(uow, "BA1")


def test_balances_are_scoped(make_uow, accounts):
    with make_uow(staff(HALL_B)) as uow:
        assert payments.account_balance(uow, "BA2").balance == 0
        with pytest.raises(NotFound):
            payments.account_balance(uow, "BA1")
        with pytest.raises(NotFound):
            payments.account_balance(uow, "NOPE")
    with make_uow(staff(HALL_B, frozenset())) as uow, pytest.raises(PermissionDenied):
        payments.account_balance(uow, "BA2")


def test_system_account_balances(make_uow, accounts):
    record(make_uow, cash("k-1", 100, account="NOPE"), staff(HALL_A))
    with make_uow() as uow:
        suspense = payments.system_account_balance(uow, "suspense")
        unused = payments.system_account_balance(uow, "cash_desk:NEVER")
        with pytest.raises(ValidationError):
            payments.system_account_balance(uow, "piggy_bank")
    assert (suspense.balance, suspense.normal_side, suspense.kind) == (100, "credit", "system")
    assert (unused.balance, unused.available, unused.normal_side) == (0, 0, "debit")
    # The cash box belongs to the hall that received the money; suspense to the operator.
    with make_uow(staff(HALL_A)) as uow:
        assert payments.system_account_balance(uow, "cash_box:BOX1").balance == 100
        with pytest.raises(NotFound):
            payments.system_account_balance(uow, "suspense")


# -- the ledger check ------------------------------------------------------------------


def test_the_check_finds_tampering(make_uow, engine, accounts):
    paid = record(make_uow, cash("k-1", 500))
    record(make_uow, cash("k-2", 700, pending=True))
    assert problems(make_uow) == []

    with engine.begin() as conn:
        conn.execute(
            update(account_table)
            .where(account_table.c.billing_account_id == "BA1")
            .values(balance=account_table.c.balance + 1)
        )
    found = problems(make_uow)
    assert len(found) == 1 and "customer:BA1" in found[0]

    with engine.begin() as conn:
        conn.execute(
            update(account_table)
            .where(account_table.c.billing_account_id == "BA1")
            .values(balance=account_table.c.balance - 1)
        )
        transfer_id = conn.execute(
            select(transfer_table.c.id).where(transfer_table.c.payment_id == paid.payment_id)
        ).scalar_one()
        conn.execute(
            delete(entry_table).where(
                entry_table.c.transfer_id == transfer_id, entry_table.c.amount < 0
            )
        )
    found = problems(make_uow)
    assert any("sum to 500" in p for p in found)  # all entries
    assert any(f"transfer {transfer_id}" in p for p in found)
    assert any("customer:BA1" in p for p in found)
    assert any("payment" in p and "holding it shows 0" in p for p in found)


def test_the_check_finds_entries_of_unknown_accounts(make_uow, engine, accounts):
    paid = record(make_uow, cash("k-1", 500))
    with engine.begin() as conn:
        row = conn.execute(select(entry_table).where(entry_table.c.amount > 0)).mappings().one()
        conn.execute(
            update(entry_table).where(entry_table.c.id == row["id"]).values(account_id="ghost")
        )
        conn.execute(
            insert(entry_table).values(
                transfer_id="no-transfer",
                account_id=row["account_id"],
                amount=5,
                business_date=row["business_date"],
                posted_at=row["posted_at"],
            )
        )
    found = problems(make_uow)
    assert any("ghost" in p for p in found)
    assert any("no-transfer" in p for p in found)
    assert paid.ok


def test_the_check_finds_a_payment_its_key_does_not_name(make_uow, engine, accounts):
    """The key's uniqueness lives in payment_idempotency alone: a payment row copied under
    a claimed key, or one whose claim is gone, is a ledger problem."""
    paid = record(make_uow, cash("k-1", 500))
    record(make_uow, cash("k-2", 700))
    assert problems(make_uow) == []
    with engine.begin() as conn:
        row = dict(
            conn.execute(select(payment_table).where(payment_table.c.id == paid.payment_id))
            .mappings()
            .one()
        )
        conn.execute(insert(payment_table).values({**row, "id": "copy", "receipt_no": "RCOPY"}))
        conn.execute(delete(idempotency_table).where(idempotency_table.c.key == "k-2"))
    found = problems(make_uow)
    assert any("RCOPY" in p and "'k-1'" in p for p in found)
    assert any("'k-2'" in p for p in found)
    assert not any(paid.receipt_no in p for p in found)  # the key's own payment is fine


def test_a_payment_is_found_by_its_key(make_uow, accounts):
    paid = record(make_uow, cash("k-1", 500))
    with make_uow() as uow:
        assert payments.get_payment_by_key(uow, "k-1").id == paid.payment_id
        with pytest.raises(NotFound):
            payments.get_payment_by_key(uow, "k-unknown")
        with pytest.raises(NotFound):
            payments.get_payment_by_key(uow, 7)  # type: ignore[arg-type]


def test_the_check_is_operator_wide(make_uow, accounts):
    with make_uow(staff(HALL_A)) as uow, pytest.raises(PermissionDenied):
        payments.check_ledger(uow)
    with make_uow(staff("/")) as uow:
        assert payments.check_ledger(uow) == []


def test_a_large_batch_of_customer_accounts_skips_those_that_exist(engine):
    """From 16 rows PostgreSQL inserts customer accounts from arrays (``unnest``), below
    as a multi-row VALUES list; both write the same rows and report only the accounts
    they created (ON CONFLICT DO NOTHING), as SQLite's read-then-insert does."""
    now = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    rows = [
        {
            "billing_account_id": f"BA{i:02d}",
            "customer_id": f"C{i}",
            "org_path": HALL_A,
            "currency": "CNY",
        }
        for i in range(40)
    ]
    with engine.begin() as conn:
        assert ledger.insert_customer_accounts(conn, rows[:5], now=now) == {
            f"BA{i:02d}" for i in range(5)
        }
        # The first 5 exist already (another customer for BA00: left as it was).
        again = [{**rows[0], "customer_id": "C-other"}, *rows[1:]]
        assert ledger.insert_customer_accounts(conn, again, now=now) == {
            f"BA{i:02d}" for i in range(5, 40)
        }
        stored = conn.execute(select(account_table).order_by(account_table.c.code)).all()
    assert len(stored) == 40
    for index, row in enumerate(stored):
        ba = f"BA{index:02d}"
        assert row.id == account_id_for(f"customer:{ba}")
        assert (row.code, row.billing_account_id, row.customer_id) == (
            f"customer:{ba}",
            ba,
            f"C{index}",
        )
        assert (row.kind, row.normal_side, row.status, row.currency) == (
            "customer",
            "credit",
            "open",
            "CNY",
        )
        assert (row.org_path, row.balance, row.pending_credit, row.pending_debit) == (
            HALL_A,
            0,
            0,
            0,
        )
        assert row.created_at == now and row.closed_at is None
