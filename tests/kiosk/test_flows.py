"""Card payments, reversal, TXN_STATUS, remote commands, customer login, journal upload
and the command line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from teleserve.gateway.server import GatewayThread
from teleserve.kiosk.availability import Function, Link
from teleserve.kiosk.devices.sim import SimPanel
from teleserve.kiosk.flows import FlowError, Refused, Unavailable
from teleserve.kiosk.journal import State

from .conftest import FakeServer, Kiosk, config_for, eventually, free_port, run

PAN = "6222021234567890123"


def test_card_payment_sends_no_card_number_and_a_reversal_voids_it(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        panel.insert_card(PAN)
        paid = await agent.customer.card_payment("13800138000", 5000)
        assert paid.answered and paid.status == "completed"
        reversal = await agent.customer.reverse(paid.serial)
        assert reversal.answered and reversal.status == "voided"
        assert agent.journal.entry(paid.serial).payment_status == "voided"
        await kiosk.shutdown()

    run(scenario())
    [raw] = fake.raw[2002]
    assert PAN not in raw.decode() and PAN[6:-4] not in raw.decode()
    card = fake.calls[2002][0]["card"]
    assert (card["bin"], card["last4"]) == (PAN[:6], PAN[-4:])
    assert set(card) == {
        "bin",
        "last4",
        "auth_code",
        "rrn",
        "merchant_id",
        "acq_terminal_id",
        "trace_no",
        "batch_no",
    }
    [(auth, amount, voided)] = panel.card.acquirer.values()
    assert (amount, voided, auth.rrn) == (5000, True, card["rrn"])
    assert PAN not in repr(panel.card)


def test_a_declined_card_sends_nothing(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        panel.card_declined()
        panel.insert_card(PAN)
        with pytest.raises(Refused) as caught:
            await agent.customer.card_payment("13800138000", 5000)
        assert caught.value.text("zh-CN") == "银行卡交易被拒绝"
        assert agent.journal.entries(serv_types=(2002,)) == []
        await kiosk.shutdown()

    run(scenario())
    assert fake.count(2002) == 0


def test_a_cash_reversal_leaves_the_payment_held(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(1000)
        paid = await agent.customer.confirm_cash()
        reversal = await agent.customer.reverse(paid.serial, "device_fault")
        assert reversal.status == "held"
        entry = agent.journal.entry(paid.serial)
        assert (entry.payment_status, entry.held_reason) == ("held", "reversed")
        with pytest.raises(FlowError):
            await agent.customer.reverse(999)  # no such payment here: nothing sent
        await kiosk.shutdown()

    run(scenario())
    assert fake.count(2009) == 1 and fake.calls[2009][0]["reason"] == "device_fault"


def test_pending_payments_are_followed_with_txn_status_until_final(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    fake.payment_status = "pending"
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(5000)
        paid = await agent.customer.confirm_cash()
        assert paid.status == "pending"
        await eventually(lambda: fake.count(2012) >= 2, what="TXN_STATUS polls")
        assert agent.journal.entry(paid.serial).payment_status == "pending"
        fake.status_now[paid.serial] = "completed"
        await eventually(lambda: agent.journal.entry(paid.serial).payment_status == "completed")
        polls = fake.count(2012)
        await asyncio.sleep(0.5)
        assert fake.count(2012) == polls  # final: no more questions
        entry = agent.journal.entry(paid.serial)
        assert entry.answer_body is not None and entry.answer_body["status"] == "pending"
        await kiosk.shutdown()

    run(scenario())


def test_remote_commands_are_executed_once_and_acknowledged(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    kiosk = make_kiosk(config_for(gw))
    restarts: list[bool] = []

    async def scenario() -> None:
        agent = await kiosk.boot()
        agent.on_restart = lambda: restarts.append(True)
        fake.commands = [
            {"command_id": "C1", "type": "out_of_service"},
            {"command_id": "C2", "type": "reload_config"},
        ]
        assert await agent.report_status()
        assert agent.link is Link.OUT_OF_SERVICE
        cash = agent.functions()[Function.CASH_PAYMENT]
        assert not cash.enabled and cash.message("zh-CN") == "本终端暂停服务"
        assert agent.config_version == 2
        assert json.loads(agent.journal.get("config") or "{}") == {"idle_logout_s": 120}
        # The same command delivered again is not executed again.
        fake.commands = [
            {"command_id": "C1", "type": "out_of_service"},
            {"command_id": "C3", "type": "in_service"},
            {"command_id": "C4", "type": "restart"},
            {"command_id": "C5", "type": "self_destruct"},
        ]
        assert await agent.report_status()
        assert agent.link is Link.ONLINE
        await eventually(lambda: fake.count(9005) == 5, what="five acks")
        await kiosk.shutdown()

    run(scenario())
    acks = {a["command_id"]: a["result"] for a in fake.calls[9005]}
    assert acks == {"C1": "done", "C2": "done", "C3": "done", "C4": "done", "C5": "failed"}
    assert restarts == [True]


def test_customer_login_summary_logout_and_reprint(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        flows = agent.customer
        with pytest.raises(FlowError):
            await flows.summary()  # not logged in
        with pytest.raises(Refused) as caught:
            await flows.login("13800138000", "password", "000000")
        assert caught.value.code == "20001"
        assert caught.value.text("zh-CN") != caught.value.text("en")  # the server's texts
        await flows.login("13800138000", "password", "123456")
        assert (await flows.summary())["balance"] == 100
        panel.present_id("110101199001011234", "张三", 91)
        await flows.login_id_card("13800138000")
        await flows.logout()
        assert flows.customer_token is None
        panel.insert_card(PAN)
        paid = await flows.card_payment("13800138000", 100)
        assert await flows.reprint(paid.serial) == [f"REPRINT {paid.serial}"]
        await kiosk.shutdown()

    run(scenario())
    id_login = fake.calls[1001][-1]
    assert id_login["method"] == "id_card" and id_login["reader_id"] == "SIM-IDR-1"
    assert id_login["customer_token"] == "ab" * 16  # a second factor on the same token
    assert fake.count(1003) == 1 and panel.printer.printed[-1] == [f"REPRINT {paid_serial(fake)}"]


def paid_serial(fake: FakeServer) -> int:
    return next(iter(fake.payments))


def test_functions_need_the_service(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.business.close()
        agent.ready = False
        with pytest.raises(Unavailable) as caught:
            await agent.customer.check_number("13800138000")
        assert caught.value.text("en") == "The service cannot be reached; reconnecting"
        assert agent.functions()[Function.RECEIPT].enabled  # printing needs no server
        await kiosk.shutdown()

    run(scenario())


def test_daily_journal_upload(
    gw: GatewayThread, fake: FakeServer, make_kiosk: Callable[..., Kiosk]
):
    panel = SimPanel()
    kiosk = make_kiosk(config_for(gw), panel)

    async def scenario() -> None:
        agent = await kiosk.boot()
        await agent.customer.start_cash("13800138000")
        panel.insert_notes(2000)
        paid = await agent.customer.confirm_cash()
        today = agent.business_date()
        answer = await agent.upload_journal(today)
        assert answer is not None and answer.ok and answer.body["matched"] == 1
        [sent] = [c for c in fake.calls[9006] if c["business_date"] == today]
        assert sent == {
            "business_date": today,
            "entries": [
                {"serial": paid.serial, "serv_type": 2001, "amount": 2000, "status": "completed"}
            ],
        }
        # The periodic upload covers yesterday, once.
        await eventually(lambda: agent.journal.get("last_upload") is not None)
        uploads = fake.count(9006)
        await agent.maybe_upload_journal()
        assert fake.count(9006) == uploads
        await kiosk.shutdown()

    run(scenario())
    assert any(call["entries"] == [] for call in fake.calls[9006])  # yesterday: nothing


def test_cli_stops_clearly_without_an_xfs4iot_publisher_and_reads_its_inputs(tmp_path: Path):
    import typer
    from typer.testing import CliRunner

    from teleserve.kiosk.cli import kiosk
    from teleserve.kiosk.config import ConfigError, parse_server, read_key_file

    key = tmp_path / "key"
    key.write_text("master_key " + bytes(range(32)).hex() + "\n")
    assert read_key_file(key) == bytes(range(32))
    key.write_text("nothex")
    with pytest.raises(ConfigError):
        read_key_file(key)
    assert parse_server("10.0.0.5") == parse_server("10.0.0.5:7070")
    endpoint = parse_server("kiosk.example:9000")
    assert (endpoint.business_port, endpoint.management_port) == (9000, 9001)
    assert parse_server("[::1]:7070", 7171).management_port == 7171
    with pytest.raises(ConfigError):
        parse_server("host:99999")

    app = typer.Typer()
    app.command()(kiosk)
    key.write_text(bytes(range(32)).hex())
    result = CliRunner().invoke(
        app,
        [
            "--terminal-id",
            "K1",
            "--key-file",
            str(key),
            "--devices",
            "xfs4iot",
            # Nothing listens there: the agent must say so and stop.
            "--xfs-url",
            f"ws://127.0.0.1:{free_port()}",
            "--data-dir",
            str(tmp_path / "d"),
        ],
    )
    assert result.exit_code == 2
    assert "XFS4IoT" in result.output and "cannot be reached" in result.output
    assert not (tmp_path / "d").exists()  # nothing was created


def test_journal_refuses_bad_transitions(tmp_path: Path):
    from teleserve.kiosk.journal import Journal, JournalError

    journal = Journal(tmp_path / "j.db")
    entry = journal.add(9002, b"{}", business_date="2026-11-26")
    journal.record_answer(entry.serial, "00000", {"alarm_id": "A"})
    with pytest.raises(JournalError):
        journal.record_answer(entry.serial, "00000", {"alarm_id": "B"})  # never changes
    with pytest.raises(JournalError):
        journal.mark_stacked(entry.serial)
    assert journal.entry(entry.serial).answer_body == {"alarm_id": "A"}
    assert journal.entry(entry.serial).state is State.ANSWERED
    journal.open_cash_in("13800138000")
    with pytest.raises(JournalError):
        journal.open_cash_in("13800138001")


def test_yuan_keeps_the_sign_of_negative_amounts():
    from teleserve.kiosk.flows import yuan

    assert [yuan(v) for v in (0, 5, 150, -150, -5, 10000)] == [
        "0.00", "0.05", "1.50", "-1.50", "-0.05", "100.00",
    ]  # fmt: skip
