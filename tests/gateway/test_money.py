"""The kiosk money path over real TCP: CASH_PAYMENT / CARD_PAYMENT through the group-commit
writer, REVERSAL, RECEIPT and TXN_STATUS (PROTOCOL.md, "Money requests are always
recorded"), on both databases."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.settings import Settings
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.handlers import money as money_handlers
from teleserve.gateway.server import GatewayThread
from teleserve.inventory import service as inventory
from teleserve.payments import service as payments
from teleserve.payments.models import payment_table
from teleserve.payments.schemas import CustomerAccountSpec
from teleserve.terminals import deposits
from teleserve.terminals.serials import get_records
from tests.catalog.helpers import CATALOG_ADMIN, standard_catalog
from tests.terminals.conftest import install_key, register, tree  # noqa: F401 (fixtures)

from .tsp_client import Client, body_of, build, mac_ok
from .vectors import CLIENT_NONCE, MASTER_KEY, TERMINAL

GZ = "/TS/GD/GZ/"
NUMBER = "13800138000"
ACCOUNT = "BA-MONEY-1"
BOX = "BOX-1"
SIGN_ON_BODY = {"client_nonce": CLIENT_NONCE, "software_version": "1.0.0", "last_serial": 0}
AGENT = Actor(ActorKind.staff, "agent", GZ, frozenset({"inventory.read", "inventory.write"}))


@pytest.fixture
def line(make_uow: Callable[..., UnitOfWork]) -> None:
    """A live prepaid line 13800138000 on billing account BA-MONEY-1 with its ledger
    account (balance 0)."""
    from teleserve.catalog import service as catalog_service

    with make_uow(CATALOG_ADMIN) as uow:
        catalog_service.create_offerings_batch(uow, standard_catalog())
        uow.commit()
    with make_uow(AGENT) as uow:
        inventory.create_subscription(
            uow,
            {
                "service_number": NUMBER,
                "kind": "mobile",
                "customer_id": "C-MONEY-1",
                "billing_account_id": ACCOUNT,
                "org_path": GZ,
                "plan_code": "P_BASIC",
                "customer_category": "individual",
                "account_type": "prepaid",
                "status": "active",
            },
        )
        uow.commit()
    with make_uow(SYSTEM) as uow:
        payments.ensure_customer_accounts(uow, [CustomerAccountSpec(ACCOUNT, "C-MONEY-1", GZ)])
        uow.commit()


def gateway_test_settings(
    engine: Engine, settings: Settings, register_terminal: Callable[..., Any], **extra: Any
) -> Settings:
    """The test terminal registered with the vector key; settings for a gateway on free
    ports that reads the registry on every frame."""
    register_terminal(TERMINAL)
    install_key(engine, TERMINAL, MASTER_KEY)
    update = {
        "gateway_business_port": 0,
        "gateway_management_port": 0,
        "gateway_terminal_cache_s": 0,
    }
    return settings.model_copy(update=update | extra)


@pytest.fixture
def gw(
    engine: Engine,
    settings: Settings,
    register: Callable[..., Any],  # noqa: F811
    line: None,
) -> Iterator[GatewayThread]:
    s = gateway_test_settings(engine, settings, register)
    thread = GatewayThread(engine, s, handlers=money_handlers.HANDLERS, money=True)
    thread.bound = thread.start()  # type: ignore[attr-defined]
    yield thread
    thread.stop()


class Kiosk:
    """A signed-on business connection of the test terminal."""

    def __init__(self, gw: Any, terminal: str = TERMINAL) -> None:
        """``gw``: a started gateway with its ``bound`` addresses (``GatewayThread`` or
        ``processes.GatewayProcesses``)."""
        self.client = Client(gw.bound.business_port)
        self.terminal = terminal
        reply = self.client.ask(build(terminal, 1, 1, SIGN_ON_BODY, key=MASTER_KEY))
        assert reply.header.err_number == "00000", body_of(reply)
        body = body_of(reply)
        from teleserve.gateway.mac import derive_session_key

        self.sid = body["session_id"]
        self.key = derive_session_key(
            MASTER_KEY, bytes.fromhex(CLIENT_NONCE), bytes.fromhex(body["server_nonce"])
        )

    def raw(self, serial: int, serv_type: int, body: dict[str, Any]) -> bytes:
        return build(self.terminal, serial, serv_type, body, key=self.key, session_id=self.sid)

    def ask(self, serial: int, serv_type: int, body: dict[str, Any]) -> tuple[str, Any]:
        reply = self.client.ask(self.raw(serial, serv_type, body))
        assert mac_ok(reply, self.key) or reply.mac == bytes(32)
        return reply.header.err_number, body_of(reply)

    def close(self) -> None:
        self.client.close()


@pytest.fixture
def kiosk(gw: GatewayThread) -> Iterator[Kiosk]:
    k = Kiosk(gw)
    yield k
    k.close()


def cash(amount: int = 10000, notes: list[dict[str, int]] | None = None, **extra: Any) -> dict:
    return {
        "msisdn": NUMBER,
        "amount": amount,
        "notes": notes if notes is not None else [{"value": 10000, "count": 1}],
        "cash_box_id": BOX,
        "txn_time_ms": 1_765_000_000_000,
        **extra,
    }


def card(amount: int = 5000, msisdn: str = NUMBER) -> dict:
    return {
        "msisdn": msisdn,
        "amount": amount,
        "card": {
            "bin": "622848",
            "last4": "1234",
            "auth_code": "A1B2C3",
            "rrn": "123456789012",
            "merchant_id": "M001",
            "acq_terminal_id": "T001",
            "trace_no": "000123",
            "batch_no": "000001",
        },
        "txn_time_ms": 1_765_000_000_000,
    }


def balance(make_uow: Callable[..., UnitOfWork]) -> int:
    with make_uow(SYSTEM) as uow:
        return payments.customer_balances(uow.connection, [ACCOUNT])[ACCOUNT]


def ledger_problems(make_uow: Callable[..., UnitOfWork]) -> list[str]:
    with make_uow(SYSTEM) as uow:
        return payments.check_ledger(uow)


def payment_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(payment_table).order_by(payment_table.c.receipt_no)))


# -- CASH_PAYMENT / CARD_PAYMENT -------------------------------------------------------


def test_cash_payment_is_credited_answered_and_recorded_once(
    kiosk: Kiosk, engine: Engine, make_uow: Callable[..., UnitOfWork]
):
    err, body = kiosk.ask(5, 2001, cash())
    assert err == "00000", body
    assert set(body) == {"txn_id", "status", "balance_after", "receipt"}
    assert (body["status"], body["balance_after"]) == ("completed", 10000)
    lines = body["receipt"]["lines"]
    text = "\n".join(lines)
    for expected in (TERMINAL, "138****8000", "¥100.00", body["txn_id"], "5", "天河自助点"):
        assert expected in text
    assert NUMBER not in text  # the number is masked on paper
    assert balance(make_uow) == 10000

    # A resend gets the recorded answer byte for byte and changes nothing.
    resent = kiosk.client.ask(kiosk.raw(5, 2001, cash()))
    assert resent.header.err_number == "00000" and body_of(resent) == body
    assert balance(make_uow) == 10000
    assert len(payment_rows(engine)) == 1
    # Another body under the same serial: 10003 with the terminal's last serial.
    err, other = kiosk.ask(5, 2001, cash(amount=5000, notes=[{"value": 5000, "count": 1}]))
    assert err == "10003" and other["error"]["details"] == {"last_serial": 5}

    with make_uow(SYSTEM) as uow:
        assert deposits.expected_notes(uow.connection, TERMINAL, BOX) == [
            {"value": 10000, "count": 1}
        ]
    assert ledger_problems(make_uow) == []


def test_card_payment_keeps_only_the_acquirer_references(kiosk: Kiosk, engine: Engine):
    err, body = kiosk.ask(6, 2002, card())
    assert err == "00000" and body["status"] == "completed" and body["balance_after"] == 5000
    [row] = payment_rows(engine)
    assert (row.channel, row.card_auth_code, row.card_rrn) == (
        "kiosk_card",
        "A1B2C3",
        "123456789012",
    )
    assert row.external_ref == "M001:000001:000123"
    assert "622848" not in json.dumps([str(v) for v in row])  # no card number part kept


@pytest.mark.parametrize(
    ("body", "reason", "recorded"),
    [
        (cash(msisdn="13900000000"), "number_not_payable", 10000),
        (cash(amount=20000), "amount_mismatch", 10000),  # the notes are the truth
        (cash(amount=0), "amount_mismatch", 10000),
        (cash(amount=300, notes=[{"value": 300, "count": 1}]), "unknown_denomination", 300),
        (
            cash(amount=600000, notes=[{"value": 10000, "count": 60}]),
            "over_limit",
            600000,
        ),
        (card(amount=600000), "over_limit", 600000),
        (card(msisdn="13900000000"), "number_not_payable", 5000),
    ],
)
def test_money_outside_the_rules_is_recorded_held_never_refused(
    kiosk: Kiosk,
    engine: Engine,
    make_uow: Callable[..., UnitOfWork],
    body: dict[str, Any],
    reason: str,
    recorded: int,
):
    serv_type = 2001 if "notes" in body else 2002
    err, answer = kiosk.ask(9, serv_type, body)
    assert err == "00000", answer
    assert (answer["status"], answer["held_reason"]) == ("held", reason)
    assert "balance_after" not in answer
    assert any("挂账 held" in line for line in answer["receipt"]["lines"])
    [row] = payment_rows(engine)
    assert (row.status, row.held_reason, row.amount) == ("held", reason, recorded)
    assert balance(make_uow) == 0
    assert ledger_problems(make_uow) == []


def test_a_malformed_payment_is_refused_and_not_recorded(kiosk: Kiosk, engine: Engine):
    err, body = kiosk.ask(10, 2001, cash(notes=[{"value": 10000, "count": 0}]))
    assert err == "10005" and body["error"]["details"]["fields"] == ["notes[0].count"]
    assert payment_rows(engine) == []
    # Nothing was recorded under the serial: the corrected request may use it.
    assert kiosk.ask(10, 2001, cash())[0] == "00000"


def test_an_out_of_service_terminal_still_records_payments(
    kiosk: Kiosk, engine: Engine, make_uow: Callable[..., UnitOfWork]
):
    from teleserve.terminals import service as terminals
    from tests.terminals.conftest import GZ_OPS

    with make_uow(GZ_OPS) as uow:
        terminals.put_out_of_service(uow, TERMINAL, "paper out")
        uow.commit()
    err, body = kiosk.ask(11, 2001, cash())
    assert (err, body["status"]) == ("00000", "completed")


def test_payments_from_many_connections_are_grouped_and_each_recorded_once(
    gw: GatewayThread,
    register: Callable[..., Any],  # noqa: F811
    engine: Engine,
    make_uow: Callable[..., UnitOfWork],
):
    terminals = [f"K-{n}" for n in range(6)]
    for terminal in terminals:
        register(terminal)
        install_key(engine, terminal, MASTER_KEY)
    errors: list[str] = []

    def pay(terminal: str) -> None:
        kiosk = Kiosk(gw, terminal)
        try:
            for serial in range(2, 12):
                err, body = kiosk.ask(serial, 2001, cash())
                if err != "00000" or body["status"] != "completed":
                    errors.append(f"{terminal}/{serial}: {err} {body}")
        finally:
            kiosk.close()

    threads = [threading.Thread(target=pay, args=(t,)) for t in terminals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(payment_rows(engine)) == 60
    assert balance(make_uow) == 600000
    writer = gw.gateway.money
    assert writer is not None and writer.requests == 60
    assert ledger_problems(make_uow) == []
    with make_uow(SYSTEM) as uow:
        for terminal in terminals:
            notes = deposits.expected_notes(uow.connection, terminal, BOX)
            assert notes == [{"value": 10000, "count": 10}]


def test_the_writer_connects_again_when_its_connection_breaks(
    gw: GatewayThread, kiosk: Kiosk, make_uow: Callable[..., UnitOfWork]
):
    """The money writer keeps one connection for its batches; one that broke (a database
    restart) is dropped and the next batch gets a new one."""
    writer = gw.gateway.money
    assert writer is not None
    assert kiosk.ask(40, 2001, cash())[0] == "00000"
    broken = list(writer._held)  # one per writer thread that recorded a batch
    assert broken
    for connection in broken:
        connection.invalidate()  # as SQLAlchemy does when the database connection is lost
    for serial in range(41, 45):  # PostgreSQL: any of its writer threads may take one
        err, body = kiosk.ask(serial, 2001, cash())
        assert (err, body["status"]) == ("00000", "completed")
    working = [c for c in writer._held if not c.invalidated]
    assert working and not any(c in broken for c in working)
    assert balance(make_uow) == 50000


# -- TXN_STATUS and RECEIPT ------------------------------------------------------------


def test_txn_status_and_receipt_reprint(kiosk: Kiosk):
    _, paid = kiosk.ask(20, 2001, cash())
    err, status = kiosk.ask(21, 2012, {"original_serial": 20})
    assert err == "00000"
    assert status == {"txn_id": paid["txn_id"], "status": "completed", "balance_after": 10000}
    err, reprint = kiosk.ask(22, 2010, {"original_serial": 20})
    assert err == "00000"
    lines = reprint["receipt"]["lines"]
    assert "重印 REPRINT" in lines
    assert [line for line in lines if line != "重印 REPRINT"][1:] == paid["receipt"]["lines"][1:]
    for serv_type in (2010, 2012):
        err, missing = kiosk.ask(23, serv_type, {"original_serial": 999})
        assert err == "20008", missing
        assert missing["error"]["message_zh"]


def test_the_receipt_shows_the_payments_time_as_its_reprint_does(
    kiosk: Kiosk, monkeypatch: pytest.MonkeyPatch
):
    """The batch reads its clock after recording the payments; when that falls in the
    next second the receipt still shows the payment's time, as a reprint (2010) does."""
    from datetime import timedelta

    from teleserve.core.clock import utcnow
    from teleserve.gateway import money

    monkeypatch.setattr(money, "utcnow", lambda: utcnow() + timedelta(seconds=5))
    _, paid = kiosk.ask(24, 2001, cash())
    _, reprint = kiosk.ask(25, 2010, {"original_serial": 24})
    lines = [line for line in reprint["receipt"]["lines"] if line != "重印 REPRINT"]
    assert lines[1:] == paid["receipt"]["lines"][1:]


# -- REVERSAL ----------------------------------------------------------------------------


def test_card_reversal_voids_the_payment_and_takes_the_credit_back(
    kiosk: Kiosk, make_uow: Callable[..., UnitOfWork]
):
    kiosk.ask(30, 2001, cash())  # 100.00 already there
    _, paid = kiosk.ask(31, 2002, card(amount=5000))
    assert balance(make_uow) == 15000
    err, reversed_ = kiosk.ask(32, 2009, {"original_serial": 31, "reason": "customer_cancel"})
    assert err == "00000", reversed_
    assert reversed_["status"] == "voided" and reversed_["balance_after"] == 10000
    assert reversed_["txn_id"] != paid["txn_id"]
    assert balance(make_uow) == 10000
    assert kiosk.ask(33, 2012, {"original_serial": 31})[1]["status"] == "voided"
    # Twice: 20009; and the recorded answer of the first reversal does not change.
    err, again = kiosk.ask(34, 2009, {"original_serial": 31, "reason": "customer_cancel"})
    assert err == "20009", again
    assert kiosk.ask(32, 2009, {"original_serial": 31, "reason": "customer_cancel"}) == (
        "00000",
        reversed_,
    )
    assert ledger_problems(make_uow) == []


def test_cash_reversal_holds_the_money_for_a_refund_at_a_counter(
    kiosk: Kiosk, make_uow: Callable[..., UnitOfWork]
):
    kiosk.ask(40, 2001, cash())
    err, body = kiosk.ask(41, 2009, {"original_serial": 40, "reason": "device_fault"})
    assert err == "00000", body
    assert (body["status"], body["held_reason"], body["balance_after"]) == ("held", "reversed", 0)
    status = kiosk.ask(42, 2012, {"original_serial": 40})[1]
    assert (status["status"], status["held_reason"]) == ("held", "reversed")
    assert "balance_after" not in status
    with make_uow(SYSTEM) as uow:  # the notes are still expected in the box
        assert deposits.expected_notes(uow.connection, TERMINAL, BOX) == [
            {"value": 10000, "count": 1}
        ]
    assert ledger_problems(make_uow) == []


def test_held_payment_stays_held_after_a_reversal(kiosk: Kiosk):
    kiosk.ask(50, 2002, card(msisdn="13900000000"))
    err, body = kiosk.ask(51, 2009, {"original_serial": 50, "reason": "timeout"})
    assert err == "00000"
    assert (body["status"], body["held_reason"]) == ("held", "number_not_payable")
    assert "balance_after" not in body  # no account: nothing to show
    assert kiosk.ask(52, 2009, {"original_serial": 50, "reason": "timeout"})[0] == "20009"


def test_reversal_on_another_business_date_is_refused(kiosk: Kiosk, engine: Engine):
    kiosk.ask(60, 2001, cash())
    with engine.begin() as conn:
        conn.execute(update(payment_table).values(business_date=date(2020, 1, 2)))
    err, body = kiosk.ask(61, 2009, {"original_serial": 60, "reason": "timeout"})
    assert err == "20009" and body["error"]["details"]["reason"] == "reversal_day_passed"


def test_late_original_after_a_reversal_is_recorded_held(
    kiosk: Kiosk, engine: Engine, make_uow: Callable[..., UnitOfWork]
):
    err, body = kiosk.ask(71, 2009, {"original_serial": 70, "reason": "timeout"})
    assert err == "20008", body
    with engine.connect() as conn:
        marker = get_records(conn, [(TERMINAL, 70)])[(TERMINAL, 70)]
    assert marker.is_marker
    # The payment arrives late: recorded, held, its notes expected in the box.
    err, paid = kiosk.ask(70, 2001, cash())
    assert err == "00000"
    assert (paid["status"], paid["held_reason"]) == ("held", "reversed_original")
    assert balance(make_uow) == 0
    # Its resend gets the same answer; the reversal's own resend still says 20008.
    assert kiosk.ask(70, 2001, cash()) == ("00000", paid)
    assert kiosk.ask(71, 2009, {"original_serial": 70, "reason": "timeout"}) == ("20008", body)
    with make_uow(SYSTEM) as uow:
        assert deposits.expected_notes(uow.connection, TERMINAL, BOX) == [
            {"value": 10000, "count": 1}
        ]
    assert ledger_problems(make_uow) == []


def test_reversal_of_a_serial_that_is_not_a_payment(kiosk: Kiosk):
    kiosk.ask(80, 2009, {"original_serial": 79, "reason": "timeout"})  # leaves a marker
    # Naming the marker's serial again, or a reversal's own serial: not a payment.
    assert kiosk.ask(81, 2009, {"original_serial": 79, "reason": "timeout"})[0] == "20008"
    assert kiosk.ask(82, 2009, {"original_serial": 80, "reason": "timeout"})[0] == "20008"
