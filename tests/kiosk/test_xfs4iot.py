"""The ``xfs4iot`` drivers against the XFS4IoT simulator, and the agent's cash and card
payments on them against the real gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from teleserve.gateway.server import GatewayThread
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.availability import Function, Link
from teleserve.kiosk.cli import build_devices
from teleserve.kiosk.config import ConfigError
from teleserve.kiosk.devices.base import (
    CardDeclined,
    CashInState,
    DeviceError,
    DeviceState,
    DeviceStatus,
    Paper,
)
from teleserve.kiosk.devices.xfs4iot import NoAcquirer, SimAcquirer, XfsDevices
from teleserve.kiosk.devices.xfs4iot.protocol import publisher_uri
from teleserve.kiosk.flows import Refused
from teleserve.kiosk.journal import Journal, State

from .conftest import FakeServer, config_for, eventually, run
from .xfs4iot_sim import SimulatorThread, XfsSimulator

PAN = "6222021234567890123"
T = TypeVar("T")


@asynccontextmanager
async def simulated(
    sim: XfsSimulator | None = None, acquirer: SimAcquirer | None = None, **kwargs: int
) -> AsyncIterator[tuple[XfsSimulator, XfsDevices]]:
    sim = sim or XfsSimulator()
    url = await sim.start()
    found = await XfsDevices.discover(url, acquirer or SimAcquirer(), **kwargs)
    try:
        yield sim, found
    finally:
        await found.close()
        await sim.stop()


async def until(read: Callable[[], Awaitable[T]], expected: T, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await read()) != expected:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {value!r}, expected {expected!r}")
        await asyncio.sleep(0.02)


# -- the drivers ---------------------------------------------------------------------------


def test_discovery_and_a_cash_in_stacked_over_the_wire():
    async def scenario() -> None:
        async with simulated() as (sim, found):
            assert set(found.services) >= {"CashAcceptor", "CardReader", "Printer"}
            cash = found.devices.cash
            assert await cash.status() == DeviceStatus(DeviceState.OK)
            await cash.cash_in_start()
            with pytest.raises(DeviceError) as caught:
                await cash.cash_in_start()
            assert caught.value.reason == "cash_in_active"
            assert sim.insert_notes(10000, 2)
            assert not sim.insert_notes(300)  # unknown denomination: handed back
            await until(cash.escrow, {10000: 2})
            assert sim.insert_notes(5000)  # a second CashIn, fed in the background
            await until(cash.escrow, {10000: 2, 5000: 1})
            assert (await cash.cash_in_status()).state is CashInState.ACTIVE
            assert await cash.stack() == {10000: 2, 5000: 1}
            assert sim.cash.box == {10000: 2, 5000: 1}
            assert (await cash.cash_in_status()).state is CashInState.OK
            assert await cash.escrow() == {}
            assert sim.cash.refused == [300]
            # The feeding CashIn was cancelled before the cash-in ended.
            names = [name for service, name in sim.commands if service == "cashacceptor"]
            cancel = names.index("Common.Cancel")
            assert names[cancel - 1] == "CashAcceptor.CashIn"
            assert names.index("CashAcceptor.CashInEnd") > cancel
            with pytest.raises(DeviceError) as caught:
                await cash.stack()
            assert caught.value.reason == "no_cash_in"

    run(scenario())


def test_every_message_is_an_xfs4iot_command_with_its_own_request_id():
    async def scenario() -> None:
        async with simulated() as (sim, found):
            await found.devices.cash.cash_in_start()
            await found.devices.cash.rollback()
            messages = [json.loads(m) for m in sim.raw]
            start = next(m for m in messages if m["header"]["name"] == "CashAcceptor.CashInStart")
            assert start["header"]["type"] == "command"
            assert start["header"]["version"] == "2.0"
            assert start["header"]["timeout"] > 0
            assert start["payload"] == {"useRecycleUnits": False}
            ids = [m["header"]["requestId"] for m in messages]
            assert all(isinstance(i, int) and i > 0 for i in ids)
            assert all(m["header"]["type"] == "command" for m in messages)

    run(scenario())


def test_a_restarted_driver_finds_the_escrow_on_the_device_and_returns_it():
    async def scenario() -> None:
        sim = XfsSimulator()
        async with simulated(sim) as (_, first):
            await first.devices.cash.cash_in_start()
            assert sim.insert_notes(2000, 3)
            await until(first.devices.cash.escrow, {2000: 3})
            # The agent dies: its connection goes, the device keeps the cash-in.
            await first.close()
            second = await XfsDevices.discover(sim.url, SimAcquirer())
            try:
                status = await second.devices.cash.cash_in_status()
                assert status == type(status)(CashInState.ACTIVE, {2000: 3})
                assert await second.devices.cash.rollback() == {2000: 3}
                assert sim.cash.returned == [{2000: 3}]
                assert (await second.devices.cash.cash_in_status()).state is CashInState.ROLLBACK
            finally:
                await second.close()

    run(scenario())


def test_cash_faults_jam_box_full_and_a_failed_stack():
    async def scenario() -> None:
        async with simulated(XfsSimulator(capacity_notes=10)) as (sim, found):
            cash = found.devices.cash
            await cash.status()
            assert cash.capacity_notes == 10  # from Storage.GetStorage
            sim.cash.box = {100: 9}
            assert await cash.status() == DeviceStatus(DeviceState.WARNING, "box_almost_full")
            sim.box_full()
            assert await cash.status() == DeviceStatus(DeviceState.FAULT, "box_full")
            with pytest.raises(DeviceError) as caught:
                await cash.cash_in_start()
            assert caught.value.reason == "box_full"
            sim.cash.box = {}
            sim.jam()
            assert await cash.status() == DeviceStatus(DeviceState.FAULT, "jam")
            with pytest.raises(DeviceError) as caught:
                await cash.cash_in_start()
            assert caught.value.reason == "jam"
            sim.clear_jam()
            await cash.cash_in_start()
            assert sim.insert_notes(100, 2)
            await until(cash.escrow, {100: 2})
            sim.fail_next_stack()
            with pytest.raises(DeviceError) as caught:
                await cash.stack()
            assert caught.value.reason == "jam"
            status = await cash.cash_in_status()
            assert (status.state, status.escrow) == (CashInState.ACTIVE, {100: 2})
            assert await cash.rollback() == {100: 2}

    run(scenario())


def test_a_service_that_goes_away_is_offline_until_it_is_back():
    async def scenario() -> None:
        async with simulated() as (sim, found):
            printer = found.devices.printer
            assert (await printer.status()).state is DeviceState.OK
            await sim.take_down("printer")
            assert await printer.status() == DeviceStatus(DeviceState.OFFLINE, "offline")
            with pytest.raises(DeviceError) as caught:
                await printer.print_receipt(["x"])
            assert caught.value.reason == "offline"
            sim.bring_up("printer")
            assert (await printer.status()).state is DeviceState.OK
            sim.printer.fault = True
            assert await printer.status() == DeviceStatus(DeviceState.FAULT, "hardware_error")

    run(scenario())


def test_printer_paper_and_receipts():
    async def scenario() -> None:
        async with simulated() as (sim, found):
            printer = found.devices.printer
            await printer.print_receipt(["缴费成功", "¥100.00"])
            assert sim.printer.printed == [["缴费成功", "¥100.00"]]
            sim.paper("low")
            assert await printer.paper() is Paper.LOW
            assert await printer.status() == DeviceStatus(DeviceState.WARNING, "paper_low")
            sim.paper("out")
            assert await printer.paper() is Paper.OUT
            assert await printer.status() == DeviceStatus(DeviceState.FAULT, "paper_out")
            with pytest.raises(DeviceError) as caught:
                await printer.print_receipt(["x"])
            assert caught.value.reason == "paper_out"
            assert len(sim.printer.printed) == 1

    run(scenario())


def test_card_read_authorise_decline_and_eject_never_letting_the_number_out():
    async def scenario() -> None:
        acquirer = SimAcquirer()
        async with simulated(acquirer=acquirer, card_read_timeout_ms=300) as (sim, found):
            card = found.devices.card
            with pytest.raises(DeviceError) as caught:
                await card.authorise(5000)  # nobody inserts a card
            assert caught.value.reason == "no_card"
            sim.insert_card(PAN)
            auth = await card.authorise(5000)
            assert not isinstance(auth, CardDeclined)
            assert (auth.bin, auth.last4) == (PAN[:6], PAN[-4:])
            assert sim.card.ejected == 1 and not sim.card.present
            assert await card.void(auth)
            assert acquirer.module.acquirer[auth.rrn][2] is True
            acquirer.module.decline("insufficient_funds")
            sim.insert_card(PAN)
            assert await card.authorise(5000) == CardDeclined("insufficient_funds")
            assert sim.card.ejected == 2
            assert PAN not in repr(card) and PAN not in repr(acquirer.module)
            sim.card.jammed = True
            assert await card.status() == DeviceStatus(DeviceState.FAULT, "card_jam")

    run(scenario())


def test_without_an_acquirer_card_payments_stay_disabled():
    async def scenario() -> None:
        async with simulated() as (sim, _):
            found = await XfsDevices.discover(sim.url, NoAcquirer())
            try:
                card = found.devices.card
                assert await card.status() == DeviceStatus(DeviceState.FAULT, "no_acquirer")
                assert found.devices.id_reader.name == "id_card_reader"
                assert (await found.devices.id_reader.status()).state is DeviceState.OFFLINE
            finally:
                await found.close()

    run(scenario())


def test_the_cli_discovers_the_services_or_refuses_to_start():
    with SimulatorThread(XfsSimulator()) as sim:
        devices, mode, panel = build_devices("xfs4iot", sim.url, "sim")
        assert mode == "sim"  # a simulated acquirer is never "hardware"
        assert panel is None  # the demo panel drives sim devices only
        assert devices.cash.capacity_notes == 2000
        _, mode, _ = build_devices("xfs4iot", sim.url + "/xfs4iot/v1.0")
        assert mode == "hardware"
        sim.down.add("printer")
        with pytest.raises(ConfigError, match="no Printer service"):
            build_devices("xfs4iot", sim.url)
        port = sim.port
    with pytest.raises(ConfigError, match="cannot be reached"):
        build_devices("xfs4iot", f"ws://127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="ws:// or wss://"):
        build_devices("xfs4iot", "http://127.0.0.1:5846")
    with pytest.raises(ConfigError, match="acquirer"):
        build_devices("xfs4iot", acquirer="visa")
    assert publisher_uri("wss://atm1:443") == "wss://atm1:443/xfs4iot/v1.0"


# -- the agent on xfs4iot devices, against the gateway ------------------------------------


async def boot(gw: GatewayThread, found: XfsDevices, journal_path: Path) -> Agent:
    agent = Agent(config_for(gw), found.devices, Journal(journal_path))
    await agent.start()
    await eventually(lambda: agent.link is Link.ONLINE, what="the agent online")
    return agent


def test_cash_payment_through_xfs4iot_devices(gw: GatewayThread, fake: FakeServer, tmp_path: Path):
    async def scenario() -> None:
        async with simulated() as (sim, found):
            agent = await boot(gw, found, tmp_path / "journal.db")
            try:
                flows = agent.customer
                await flows.start_cash("13800138000")
                assert sim.insert_notes(10000) and sim.insert_notes(5000, 2)
                await until(flows.cash_escrow, {10000: 1, 5000: 2})
                outcome = await flows.confirm_cash()
                assert outcome.answered and outcome.status == "completed"
                assert outcome.amount == 20000
                assert outcome.printed and sim.printer.printed[-1] == outcome.receipt
                assert sim.cash.box == {10000: 1, 5000: 2}
                entry = agent.journal.entry(outcome.serial)
                assert (entry.state, entry.payment_status) == (State.ANSWERED, "completed")
                # A jam takes the cash function away, with its reason.
                sim.jam()
                await agent.refresh_devices()
                cash = agent.functions()[Function.CASH_PAYMENT]
                assert not cash.enabled
                assert cash.message("zh-CN") != cash.message("en")
                assert agent.statuses["cash_acceptor"].detail == "jam"
                alarms = [e.request for e in agent.journal.entries(serv_types=(9002,))]
                # The ID-card reader XFS4IoT does not drive is reported once, at start.
                assert [(a["alarm_code"], a["device"]) for a in alarms] == [
                    ("device_offline", "id_card_reader"),
                    ("device_fault", "cash_acceptor"),
                ]
            finally:
                await agent.stop()
                agent.journal.close()

    run(scenario(), timeout=30)
    assert fake.calls[2001][0]["notes"] == [
        {"value": 5000, "count": 2},
        {"value": 10000, "count": 1},
    ]


def test_card_payment_and_reversal_through_xfs4iot_devices(
    gw: GatewayThread, fake: FakeServer, tmp_path: Path
):
    acquirer = SimAcquirer()

    async def scenario() -> None:
        async with simulated(acquirer=acquirer) as (sim, found):
            agent = await boot(gw, found, tmp_path / "journal.db")
            try:
                sim.insert_card(PAN)
                paid = await agent.customer.card_payment("13800138000", 5000)
                assert paid.answered and paid.status == "completed"
                reversal = await agent.customer.reverse(paid.serial)
                assert reversal.answered and reversal.status == "voided"
                acquirer.module.decline()
                sim.insert_card(PAN)
                with pytest.raises(Refused):
                    await agent.customer.card_payment("13800138000", 5000)
                assert sim.card.ejected == 2
            finally:
                await agent.stop()
                agent.journal.close()

    run(scenario(), timeout=30)
    [raw] = fake.raw[2002]  # the declined card sent nothing
    assert PAN not in raw.decode() and PAN[6:-4] not in raw.decode()
    card = fake.calls[2002][0]["card"]
    assert (card["bin"], card["last4"]) == (PAN[:6], PAN[-4:])
    [(auth, amount, voided)] = acquirer.module.acquirer.values()
    assert (amount, voided, auth.rrn) == (5000, True, card["rrn"])
