"""Journal reconciliation (9006): a terminal's journal against the server's records,
matched by serial, kept for staff."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from teleserve.core.clock import FrozenClock, business_date
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.money_state import tsp_status
from teleserve.payments import service as payments
from teleserve.terminals import journal
from teleserve.terminals.fleet_models import reconciliation_table

from .conftest import GZ_READER, SZ_OPS, audit_actions
from .fleet_support import kiosk_payment, recorded_answer


def upload(
    make_uow: Callable[..., UnitOfWork], day: date, entries: list[dict[str, Any]]
) -> journal.Reconciled:
    with make_uow() as uow:
        done = journal.reconcile_journal(uow.connection, "K1", day, entries, tsp_status=tsp_status)
        uow.commit()
    return done


def entry(serial: int, serv_type: int, amount: int, status: str) -> dict[str, Any]:
    return {"serial": serial, "serv_type": serv_type, "amount": amount, "status": status}


def test_a_journal_is_matched_by_serial(make_uow, engine, register, run, frozen_clock: FrozenClock):
    register("K1")
    today = business_date(frozen_clock.now())
    kiosk_payment(make_uow, "K1", 10, notes=[{"value": 10000, "count": 1}])
    kiosk_payment(make_uow, "K1", 11, card_amount=2000)
    recorded_answer(make_uow, "K1", 12, 2009, {"txn_id": "R1", "status": "held"})
    recorded_answer(make_uow, "K1", 13, 9002, {"alarm_id": "A1"})
    kiosk_payment(make_uow, "K1", 14, notes=[{"value": 5000, "count": 1}])  # not listed
    recorded_answer(make_uow, "K1", 15, 2009, {}, err_number="20008")  # not a payment
    done = upload(
        make_uow,
        today,
        [
            entry(10, 2001, 10000, "held"),
            entry(11, 2002, 2500, "held"),  # another amount
            entry(12, 2009, 0, "held"),
            entry(13, 9002, 0, "done"),
            entry(99, 2001, 5000, "completed"),  # the server never got it
            entry(16, 2002, 100, "completed"),  # nor this one
        ],
    )
    assert done.matched == 3
    assert (done.missing_on_server, done.missing_on_terminal, done.mismatched) == (
        [99, 16],
        [14],
        [11],
    )
    [kept] = run(GZ_READER, journal.list_reconciliations, terminal_id="K1")
    assert (kept.reconciliation_id, kept.business_date, kept.entries, kept.matched) == (
        done.reconciliation_id,
        today,
        6,
        3,
    )
    assert kept.mismatched == [
        {
            "serial": 11,
            "terminal": {"serv_type": 2002, "amount": 2500, "status": "held"},
            "server": {"serv_type": 2002, "amount": 2000, "status": "held"},
        }
    ]
    assert (kept.missing_on_server, kept.missing_on_terminal) == ([99, 16], [14])
    assert run(SZ_OPS, journal.list_reconciliations) == []
    audited = dict(audit_actions(engine))["terminals.journal_reconciled"]
    assert (audited["matched"], audited["mismatched"]) == (3, 1)


def test_status_is_compared_as_the_protocol_names_it_now(make_uow, register):
    register("K1")
    card = kiosk_payment(make_uow, "K1", 20, card_amount=3000)
    kiosk_payment(make_uow, "K1", 21, notes=[{"value": 10000, "count": 1}])
    recorded_answer(make_uow, "K1", 22, 2009, {}, err_number="20008")
    with make_uow() as uow:
        payments.reverse_payment(uow, card, "customer_cancel")
        uow.commit()
    with make_uow(readonly=True) as uow:
        status = payments.terminal_payments(uow.connection, "K1", [20])[20].status
    today = business_date()
    done = upload(
        make_uow,
        today,
        [
            entry(20, 2002, 3000, tsp_status(status)),
            entry(21, 2002, 10000, "held"),  # a cash payment journaled as a card one
            entry(22, 2009, 0, "20008"),  # the error it was answered
        ],
    )
    assert tsp_status(status) == "voided"
    assert (done.matched, done.mismatched) == (2, [21])


def test_entries_match_whatever_date_the_server_filed_them(
    make_uow, register, frozen_clock: FrozenClock
):
    register("K1")
    kiosk_payment(make_uow, "K1", 30, notes=[{"value": 10000, "count": 1}])
    yesterday = business_date(frozen_clock.now())
    frozen_clock.advance(days=1)
    kiosk_payment(make_uow, "K1", 31, notes=[{"value": 10000, "count": 1}])
    today = yesterday + timedelta(days=1)
    # Today's journal lists yesterday's payment too: matched, and yesterday's figures
    # do not count as missing from today's journal.
    done = upload(make_uow, today, [entry(30, 2001, 10000, "held")])
    assert (done.matched, done.missing_on_terminal) == (1, [31])
    assert upload(make_uow, yesterday, []).missing_on_terminal == [30]


def test_a_serial_listed_twice_is_refused_and_nothing_kept(make_uow, engine, register):
    register("K1")
    with make_uow() as uow, pytest.raises(journal.DuplicateSerial) as caught:
        journal.reconcile_journal(
            uow.connection,
            "K1",
            business_date(),
            [entry(1, 2001, 1, "held"), entry(2, 2001, 1, "held"), entry(1, 2001, 1, "held")],
            tsp_status=tsp_status,
        )
    assert caught.value.path == "entries[2].serial"
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(reconciliation_table)) == 0
