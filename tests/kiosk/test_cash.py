"""Cash payments: journal before stack, exactly-once across a crash, recovery of the
cash-in after a restart, 10003, and device faults disabling the cash function."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from teleserve.gateway.body import encode_body
from teleserve.gateway.server import GatewayThread
from teleserve.kiosk.availability import Function
from teleserve.kiosk.devices.base import CashInState, Notes
from teleserve.kiosk.devices.sim import SimCashAcceptor, SimPanel
from teleserve.kiosk.journal import Journal, State
from teleserve.terminals.serials import SerialRecord, get_records, insert_or_get

from .conftest import TERMINAL, FakeServer, Kiosk, KioskConfig, config_for, eventually, run


class WatchedAcceptor(SimCashAcceptor):
    """Reads the journal file through its own connection at the moment of stacking: what
    it sees is committed, on disk, before a single note moves."""

    def __init__(self, journal_path: Path) -> None:
        super().__init__()
        self.journal_path = journal_path
        self.seen_at_stack: list[tuple[int, str, bytes, str]] = []

    async def stack(self) -> Notes:
        with sqlite3.connect(self.journal_path) as db:
            rows = db.execute(
                "SELECT serial, state, body, notes FROM entry WHERE serv_type = 2001"
            ).fetchall()
        self.seen_at_stack.extend(rows)
        return await super().stack()


def test_cash_payment_is_journaled_before_the_notes_are_stacked(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk], tmp_path: Path
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)
    panel.cash = WatchedAcceptor(kiosk.journal_path)

    async def scenario() -> None:
        agent = await kiosk.boot()
        flows = agent.customer
        check = await flows.check_number("13800138000")
        assert (check.payable, check.customer_name) == (True, "张*")
        await flows.start_cash("13800138000")
        assert panel.insert_notes(10000, 2) and panel.insert_notes(5000)
        assert not panel.insert_notes(300)  # unknown denomination: handed back
        outcome = await flows.confirm_cash()
        assert outcome.answered and outcome.status == "completed"
        assert outcome.amount == 25000 and outcome.balance_after == 30000
        assert outcome.printed and panel.printer.printed[-1] == outcome.receipt
        await kiosk.shutdown()

    run(scenario())
    cash = panel.cash
    assert isinstance(cash, WatchedAcceptor)
    [(serial, state, body, notes)] = cash.seen_at_stack
    assert state == "journaled"  # on disk, not yet sendable, before the stack
    assert json.loads(notes) == {"5000": 1, "10000": 2}
    assert fake.raw[2001] == [body]  # the server got exactly the journaled bytes
    assert fake.calls[2001][0]["notes"] == [
        {"value": 5000, "count": 1},
        {"value": 10000, "count": 2},
    ]
    assert cash.box == {10000: 2, 5000: 1}
    journal = Journal(kiosk.journal_path)
    entry = journal.entry(serial)
    assert (entry.state, entry.payment_status) == (State.ANSWERED, "completed")
    assert journal.cash_in() is None


def test_crash_between_stack_and_answer_resends_the_same_bytes_and_pays_once(
    gw: GatewayThread,
    fake: FakeServer,
    make_kiosk: Callable[..., Kiosk],
    engine: Engine,
):
    fake.gate = threading.Event()  # the server is slow: the answer comes too late
    config = config_for(gw, answer_timeout_s=0.5)
    panel = SimPanel()
    kiosk = make_kiosk(config, panel)

    async def first_life() -> int:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(2000, 3)
        outcome = await agent.customer.confirm_cash()
        assert not outcome.answered  # no answer in time: the journal takes over
        assert outcome.printed and f"#{outcome.serial}" in " ".join(outcome.receipt)
        await kiosk.crash()  # before any resend
        return outcome.serial

    serial = run(first_life())
    assert panel.cash.box == {2000: 3}  # stacked before the crash
    fake.gate.set()  # the original is processed and recorded on the server meanwhile
    journal = Journal(kiosk.journal_path)
    pending = journal.entry(serial)
    assert pending.state is State.PENDING
    journal.close()

    async def second_life() -> None:
        agent = await kiosk.boot()
        await eventually(
            lambda: agent.journal.entry(serial).state is State.ANSWERED, what="the resend"
        )
        await kiosk.shutdown()

    run(second_life())
    assert fake.count(2001) == 1  # processed once; the resend was answered from the record
    journal = Journal(kiosk.journal_path)
    answered = journal.entry(serial)
    assert answered.body == pending.body  # same serial, same bytes
    assert answered.answer_body is not None and answered.answer_body["txn_id"] == f"TXN{serial:06d}"
    assert [e.serial for e in journal.entries(serv_types=(2001,))] == [serial]
    with engine.connect() as conn:
        assert list(get_records(conn, [(TERMINAL, serial)])) == [(TERMINAL, serial)]


def test_unstacked_cash_after_a_crash_is_stacked_and_sent(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    """The customer confirmed, the journal row is on disk, the PC died before the stack:
    the acceptor still has the notes in escrow, so recovery stacks them and sends."""
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> int:
        journal = Journal(kiosk.journal_path)
        journal.set_cash_box("BOX-7")
        await panel.cash.cash_in_start()
        panel.insert_notes(10000)
        body = {
            "msisdn": "13800138000",
            "amount": 10000,
            "notes": [{"value": 10000, "count": 1}],
            "cash_box_id": "BOX-7",
            "txn_time_ms": 1764115200000,
        }
        entry = journal.add(
            2001,
            encode_body(body),
            business_date="2026-11-26",
            state=State.JOURNALED,
            amount=10000,
            cash_box_id="BOX-7",
            notes={10000: 1},
        )
        journal.close()
        agent = await kiosk.boot()
        await eventually(lambda: agent.journal.entry(entry.serial).state is State.ANSWERED)
        await kiosk.shutdown()
        return entry.serial

    serial = run(scenario())
    assert panel.cash.box == {10000: 1}
    assert panel.cash.state is CashInState.OK
    assert fake.count(2001) == 1 and fake.payments[serial]["cash_box_id"] == "BOX-7"


def test_unconfirmed_cash_in_is_returned_and_nothing_sent(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(5000, 2)
        await kiosk.crash()  # before the customer confirmed
        agent = await kiosk.boot()
        assert agent.journal.cash_in() is None
        await kiosk.shutdown()

    run(scenario())
    assert panel.cash.returned == [{5000: 2}] and panel.cash.box == {}
    assert fake.count(2001) == 0


def test_returned_notes_cancel_the_journaled_payment(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    """A stack that fails with the notes still in escrow gives them back; the journaled
    request is cancelled, never sent, and the customer is told."""
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(1000)
        panel.cash.fail_next_stack("jam")
        from teleserve.kiosk.flows import FlowError

        try:
            await agent.customer.confirm_cash()
        except FlowError as exc:
            assert "staff" in exc.text("en")
        else:
            raise AssertionError("a failed stack must not pass as a payment")
        [entry] = agent.journal.entries(serv_types=(2001,))
        assert entry.state is State.CANCELLED
        assert not agent.functions()[Function.CASH_PAYMENT].enabled  # jammed now
        await kiosk.shutdown()

    run(scenario())
    assert panel.cash.returned == [{1000: 1}]
    assert fake.count(2001) == 0


def test_serial_conflict_raises_an_alarm_and_is_never_reissued(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk], engine: Engine
):
    """The server holds serial 5 with another body (say, a disk restored from an old
    backup): 10003 → an alarm, the entry is closed, and no new serial carries it."""
    from teleserve.core.clock import utcnow

    with engine.begin() as conn:
        insert_or_get(conn, [SerialRecord(TERMINAL, 5, 2001, "0" * 64, "00000", "{}", utcnow())])
    kiosk = make_kiosk(config_for(gw))
    journal = Journal(kiosk.journal_path)
    for _ in range(4):
        journal.next_serial()
    body = encode_body(
        {
            "msisdn": "13800138000",
            "amount": 100,
            "notes": [{"value": 100, "count": 1}],
            "cash_box_id": "BOX",
            "txn_time_ms": 1764115200000,
        }
    )
    entry = journal.add(
        2001, body, business_date="2026-11-26", amount=100, cash_box_id="BOX", notes={100: 1}
    )
    assert entry.serial == 5
    journal.close()

    async def scenario() -> None:
        agent = await kiosk.boot()
        await eventually(lambda: agent.journal.entry(5).state is State.CONFLICT)
        await eventually(lambda: fake.count(9002) >= 1, what="the alarm")
        await agent.drain()  # another round: nothing is resent
        await kiosk.shutdown()

    run(scenario())
    alarms = [a for a in fake.calls[9002] if a["alarm_code"] == "serial_conflict"]
    assert len(alarms) == 1 and alarms[0]["severity"] == "critical"
    assert fake.count(2001) == 0  # the handler never ran: the record answered 10003
    journal = Journal(kiosk.journal_path)
    assert [e.serial for e in journal.entries(serv_types=(2001,))] == [5]
    assert journal.entry(5).err_number == "10003"


def test_a_device_fault_disables_cash_and_raises_an_alarm(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        assert agent.functions()[Function.CASH_PAYMENT].enabled
        panel.jam()
        await agent.refresh_devices()
        cash = agent.functions()[Function.CASH_PAYMENT]
        assert not cash.enabled
        assert cash.as_dict() == {
            "enabled": False,
            "reason_en": "Notes are jammed in the cash acceptor",
            "reason_zh": "纸币识别器卡币",
        }
        assert agent.functions()[Function.CARD_PAYMENT].enabled  # other functions go on
        from teleserve.kiosk.flows import Unavailable

        try:
            await agent.customer.start_cash("13800138000")
        except Unavailable as exc:
            assert exc.text("zh-CN") == "纸币识别器卡币"
        else:
            raise AssertionError("cash must be refused while jammed")
        assert agent.journal.cash_in() is None
        await eventually(lambda: fake.count(9002) >= 1, what="the alarm")
        panel.clear_jam()
        panel.box_full()
        await agent.refresh_devices()
        assert agent.functions()[Function.CASH_PAYMENT].reason == "The cash box is full"
        panel.paper("out")
        await agent.refresh_devices()
        assert not agent.functions()[Function.RECEIPT].enabled
        await eventually(lambda: fake.count(9002) >= 3, what="three alarms")
        await kiosk.shutdown()

    run(scenario())
    details = [(a["device"], a["message"]) for a in fake.calls[9002]]
    assert [d for d, _ in details] == ["cash_acceptor", "cash_acceptor", "receipt_printer"]
    assert "jam" in details[0][1] and "box_full" in details[1][1]


def test_status_reports_carry_devices_and_box_contents(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(10000)
        await agent.customer.confirm_cash()
        panel.paper("low")
        assert await agent.report_status()
        await kiosk.shutdown()

    run(scenario())
    first, last = fake.calls[9001][0], fake.calls[9001][-1]
    assert first["device_mode"] == "sim" and first["cash_box"]["notes"] == []
    assert last["cash_box"] == {
        "box_id": f"{TERMINAL}-BOX1",
        "notes": [{"value": 10000, "count": 1}],
        "capacity_notes": 2000,
    }
    assert last["printer_paper"] == "low"
    assert last["devices"]["receipt_printer"] == {"state": "warning", "detail": "paper_low"}
    assert set(last["devices"]) == {
        "cash_acceptor",
        "card_module",
        "receipt_printer",
        "id_card_reader",
        "sensors",
    }


def test_cash_collection_switches_the_box(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(2000, 2)
        await agent.customer.confirm_cash()
        counted = panel.cash.empty_box()
        answer = await agent.collect_cash(counted, "op-7", "BOX-2")
        assert answer is not None and answer.ok
        assert agent.journal.cash_box_id == "BOX-2"
        assert agent.journal.box_contents("BOX-2") == {}
        await kiosk.shutdown()

    run(scenario())
    [collection] = fake.calls[9003]
    assert collection["box_id"] == f"{TERMINAL}-BOX1" and collection["new_box_id"] == "BOX-2"
    assert collection["counted"] == [{"value": 2000, "count": 2}]


def test_unused_config_is_rejected(make_kiosk: Callable[..., Kiosk]):
    """KioskConfig refuses what the protocol cannot carry (no server needed)."""
    import pytest

    from teleserve.kiosk.config import ConfigError, Endpoint

    with pytest.raises(ConfigError):
        KioskConfig(terminal_id="bad id", master_key=bytes(32), endpoint=Endpoint("h"))
    with pytest.raises(ConfigError):
        KioskConfig(terminal_id="K1", master_key=bytes(31), endpoint=Endpoint("h"))
