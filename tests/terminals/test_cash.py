"""Cash collections (清机): expected notes from every recorded cash payment of the box,
surplus and shortage as finance exceptions, a box collected once, late deposits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from teleserve.core.clock import utcnow
from teleserve.core.errors import Conflict, NotFound, PermissionDenied, ValidationError
from teleserve.core.uow import UnitOfWork
from teleserve.terminals import cash, deposits
from teleserve.terminals.fleet_models import collection_table, exception_table

from .conftest import GZ, GZ_OPS, GZ_READER, SZ_OPS, audit_actions, events, staff
from .fleet_support import kiosk_payment

FINANCE = staff(GZ, "terminals.read", "payments.reconcile", user_id="fin-gz")


def collect(
    make_uow: Callable[..., UnitOfWork],
    counted: list[dict[str, int]],
    *,
    terminal_id: str = "K1",
    box: str = "BOX-1",
    new_box: str = "BOX-2",
) -> cash.Collected:
    with make_uow() as uow:
        done = cash.collect_box(
            uow.connection,
            terminal_id,
            box_id=box,
            counted=counted,
            operator_id="op-7",
            collected_at=utcnow(),
            new_box_id=new_box,
        )
        uow.commit()
    return done


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(table)) or 0)


@pytest.fixture
def box(make_uow, register) -> list[dict[str, int]]:
    """K1's BOX-1 holds two cash payments: 2 × ¥100, then ¥50 + ¥100 (and K1 has a card
    payment, which is not in any box)."""
    register("K1")
    kiosk_payment(make_uow, "K1", 1, notes=[{"value": 10000, "count": 2}])
    kiosk_payment(
        make_uow, "K1", 2, notes=[{"value": 5000, "count": 1}, {"value": 10000, "count": 1}]
    )
    kiosk_payment(make_uow, "K1", 3, card_amount=8800)
    return [{"value": 5000, "count": 1}, {"value": 10000, "count": 3}]


def test_a_collection_that_counts_what_was_expected(make_uow, engine, box, run):
    done = collect(make_uow, [{"value": 10000, "count": 3}, {"value": 5000, "count": 1}])
    assert (done.expected, done.discrepancy) == (box, 0)
    with make_uow() as uow:
        assert done.expected == deposits.expected_notes(uow.connection, "K1", "BOX-1")
    [listed] = run(GZ_READER, cash.list_collections, terminal_id="K1")
    assert (listed.collection_id, listed.deposits, listed.expected_amount) == (
        done.collection_id,
        2,
        35000,
    )
    assert (listed.new_box_id, listed.operator_id, listed.counted_amount) == (
        "BOX-2",
        "op-7",
        35000,
    )
    assert run(GZ_READER, cash.list_exceptions) == []
    assert [a for a, _ in audit_actions(engine)][-1] == "terminals.cash_collected"
    assert [t for t, _ in events(engine, "terminals.cash")] == [cash.CASH_COLLECTED_TOPIC]


@pytest.mark.parametrize(
    ("counted", "kind", "amount"),
    [
        ([{"value": 10000, "count": 2}, {"value": 5000, "count": 1}], "shortage", 10000),
        (
            [{"value": 10000, "count": 3}, {"value": 5000, "count": 1}, {"value": 100, "count": 5}],
            "surplus",
            500,
        ),
    ],
)
def test_a_discrepancy_is_a_finance_exception(make_uow, engine, box, run, counted, kind, amount):
    done = collect(make_uow, counted)
    assert done.discrepancy == (amount if kind == "surplus" else -amount)
    [exception] = run(GZ_READER, cash.list_exceptions)
    assert (exception.kind, exception.amount, exception.status) == (kind, amount, "open")
    assert (exception.collection_id, exception.box_id) == (done.collection_id, "BOX-1")
    audited = dict(audit_actions(engine))["terminals.cash_discrepancy"]
    assert (audited["kind"], audited["amount"]) == (kind, amount)
    [(_topic, payload)] = events(engine, cash.CASH_DISCREPANCY_TOPIC)
    assert (payload["exception_id"], payload["discrepancy"]) == (
        exception.exception_id,
        done.discrepancy,
    )


def test_counted_notes_are_canonical(make_uow, box, run):
    counted = [
        {"value": 10000, "count": 1},
        {"value": 200, "count": 0},
        {"value": 5000, "count": 1},
        {"value": 10000, "count": 2},
    ]
    assert collect(make_uow, counted).discrepancy == 0
    [listed] = run(GZ_READER, cash.list_collections)
    assert [(n.value, n.count) for n in listed.counted] == [(5000, 1), (10000, 3)]


def test_a_box_is_collected_once_and_box_ids_are_never_reused(make_uow, engine, box):
    first = collect(make_uow, box)
    with pytest.raises(cash.BoxAlreadyCollected) as caught:
        collect(make_uow, box, new_box="BOX-3")
    assert caught.value.params["collection_id"] == first.collection_id
    with pytest.raises(cash.InvalidNewBox):
        collect(make_uow, [], box="BOX-9", new_box="BOX-9")  # the box itself
    collect(make_uow, [], box="BOX-2", new_box="BOX-3")
    with pytest.raises(cash.InvalidNewBox):
        collect(make_uow, [], box="BOX-9", new_box="BOX-2")  # collected before
    assert count(engine, collection_table) == 2
    with make_uow() as uow, pytest.raises(NotFound):
        cash.collect_box(
            uow.connection,
            "NOPE",
            box_id="B",
            counted=[],
            operator_id="o",
            collected_at=utcnow(),
            new_box_id="C",
        )


def test_a_deposit_into_a_collected_box_shows_as_a_late_deposit(make_uow, box, run):
    done = collect(make_uow, box)
    late = kiosk_payment(make_uow, "K1", 4, notes=[{"value": 2000, "count": 1}])
    kiosk_payment(make_uow, "K1", 5, box="BOX-2", notes=[{"value": 2000, "count": 1}])
    [exception] = run(GZ_READER, cash.list_exceptions)
    assert (exception.kind, exception.payment_id, exception.serial) == ("late_deposit", late, 4)
    assert (exception.amount, exception.collection_id, exception.box_id) == (
        2000,
        done.collection_id,
        "BOX-1",
    )
    assert run(GZ_READER, cash.list_exceptions, status="resolved") == []
    assert run(SZ_OPS, cash.list_exceptions) == []


def test_finance_resolves_a_shortage(make_uow, engine, box, run):
    collect(make_uow, [{"value": 10000, "count": 3}])
    [open_] = run(GZ_READER, cash.list_exceptions)
    with pytest.raises(PermissionDenied):
        run(GZ_OPS, cash.resolve_exception, open_.exception_id, "found under the tray")
    with pytest.raises(ValidationError):
        run(FINANCE, cash.resolve_exception, open_.exception_id, "  ")
    with pytest.raises(NotFound):
        run(
            staff("/TS/GD/SZ/", "payments.reconcile"),
            cash.resolve_exception,
            open_.exception_id,
            "x",
        )
    resolved = run(FINANCE, cash.resolve_exception, open_.exception_id, "found under the tray")
    assert (resolved.status, resolved.resolved_by, resolved.note) == (
        "resolved",
        "fin-gz",
        "found under the tray",
    )
    with pytest.raises(Conflict):
        run(FINANCE, cash.resolve_exception, open_.exception_id, "again")
    assert run(GZ_READER, cash.list_exceptions) == []
    assert [e.exception_id for e in run(GZ_READER, cash.list_exceptions, status=None)] == [
        open_.exception_id
    ]
    assert "terminals.cash_exception_resolved" in dict(audit_actions(engine))
    assert count(engine, exception_table) == 1
    with pytest.raises(ValidationError):
        run(GZ_READER, cash.list_exceptions, status="closed")
