"""The TSP/1 client against the real gateway: sign-on, keepalive, re-sign-on after
10007, MAC verification, reconnection with backoff, the serial counter, TLS."""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from teleserve.gateway.body import encode_body
from teleserve.gateway.frame import Header
from teleserve.gateway.reply import signed_frame
from teleserve.gateway.server import GatewayThread
from teleserve.kiosk.availability import Link
from teleserve.kiosk.client import Backoff, BusinessChannel, TransportError
from teleserve.kiosk.journal import Journal, State
from teleserve.terminals.serials import SerialRecord, insert_or_get

from .conftest import (
    MASTER_KEY,
    TERMINAL,
    FakeServer,
    Gateways,
    Kiosk,
    ReservedPorts,
    config_for,
    eventually,
    kiosk_config,
    run,
)


def test_sign_on_keepalive_and_resign_on_after_10007(gw: GatewayThread, tmp_path: Path):
    journal = Journal(tmp_path / "j.db")
    channel = BusinessChannel(config_for(gw), journal)

    async def scenario() -> None:
        signed = await channel.connect()
        assert signed.keepalive_s == 30 and signed.server_last_serial == 0
        answer = await channel.request(3, b"{}")
        assert answer.ok and isinstance(answer.body["server_time_ms"], int)
        # The server forgets our session (say, it restarted behind a load balancer that
        # kept the TCP connection): 10007, then a new sign-on and the same request again.
        channel._session_id = "0badf00d"
        again = await channel.request(3, b"{}")
        assert again.ok and channel._session_id != "0badf00d"
        await channel.sign_off()
        assert not channel.connected

    run(scenario())
    # sign-on, keepalive, keepalive (10007), sign-on, keepalive, sign-off
    assert journal.last_serial == 5


def test_keepalive_keeps_an_idle_connection_open(gateways: Gateways, tmp_path: Path):
    """The server closes a connection silent for 3 × keepalive_s; the client's
    KEEPALIVEs (one per keepalive_s of silence) keep it open."""
    gateways.settings = gateways.settings.model_copy(update={"gateway_keepalive_s": 1})
    gw = gateways.start()
    journal = Journal(tmp_path / "j.db")
    channel = BusinessChannel(config_for(gw), journal)

    async def scenario() -> None:
        task = asyncio.create_task(channel.run())
        # Signed on, not just connected: the session id is set after the SIGN_ON answer.
        assert await channel.wait_connected(10)
        session = channel._session_id
        first = journal.last_serial
        await asyncio.sleep(3.6)  # past the server's idle close (3 x 1 s)
        assert channel.connected and channel._session_id == session  # never dropped
        # About one keepalive a second; two at least, even on a loaded machine.
        assert journal.last_serial >= first + 2
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await channel.close()

    run(scenario())


def test_an_answer_with_a_bad_mac_ends_the_connection(tmp_path: Path):
    """A frame MAC'd with another key is not an answer: the connection is dropped."""

    async def scenario() -> None:
        async def fake_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(4096)
            header = Header(TERMINAL, 1, 1, "R", True, "00000", 1764115200050, "a1b2c3d4")
            body = encode_body({"session_id": "a1b2c3d4"})
            writer.write(signed_frame(header, body, bytes(range(1, 33))))
            await writer.drain()
            await asyncio.sleep(1)
            writer.close()

        server = await asyncio.start_server(fake_server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        channel = BusinessChannel(kiosk_config(port, port), Journal(tmp_path / "j.db"))
        with pytest.raises(TransportError, match="MAC"):
            await channel.connect()
        assert not channel.connected
        server.close()

    run(scenario())


def test_backoff_grows_with_jitter_and_caps():
    backoff = Backoff(1.0, 8.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not lock-step
    backoff.reset()
    assert backoff.next() <= 1.0
    assert 4.0 <= backoff.slow() <= 8.0


def test_agent_reconnects_with_backoff_when_the_server_comes_up(
    gateways: Gateways,
    fake: FakeServer,
    make_kiosk: Callable[..., Kiosk],
    reserved_ports: ReservedPorts,
):
    business, management = reserved_ports.take(), reserved_ports.take()
    # A stopped test gateway leaves its sockets open without answering (a hung server):
    # the next KEEPALIVE goes unanswered, which is how the agent notices.
    gateways.settings = gateways.settings.model_copy(update={"gateway_keepalive_s": 1})
    kiosk = make_kiosk(kiosk_config(business, management, answer_timeout_s=1.0))

    async def scenario() -> None:
        agent = await kiosk.boot(wait_online=False)
        await asyncio.sleep(0.6)  # several failed attempts, spaced by the backoff
        assert agent.link is Link.OFFLINE
        assert agent.business.backoff.attempt >= 2
        assert not agent.functions()[next(iter(agent.functions()))].enabled
        await asyncio.to_thread(gateways.start, business, management)
        await eventually(lambda: agent.link is Link.ONLINE, what="reconnection")
        assert agent.business.backoff.attempt == 0
        assert fake.count(9001) == 1  # reported status once back
        # The server goes away again: the agent notices and comes back by itself.
        await asyncio.to_thread(gateways.stop_all)
        await eventually(lambda: agent.link is Link.OFFLINE, what="the drop")
        await asyncio.to_thread(gateways.start, business, management)
        await eventually(lambda: agent.link is Link.ONLINE, what="the second reconnection")
        await kiosk.shutdown()

    run(scenario(), timeout=40)


def test_serial_counter_survives_restart_and_moves_past_the_server(
    gw: GatewayThread, make_kiosk: Callable[..., Kiosk], engine: Engine, tmp_path: Path
):
    from teleserve.core.clock import utcnow

    journal = Journal(tmp_path / "counter.db")
    assert [journal.next_serial() for _ in range(3)] == [1, 2, 3]
    journal.close()
    journal = Journal(tmp_path / "counter.db")
    assert journal.next_serial() == 4  # persisted, never reused
    # The server recorded serial 50 for this terminal (a counter lost with a disk).
    with engine.begin() as conn:
        insert_or_get(conn, [SerialRecord(TERMINAL, 50, 1003, "0" * 64, "00000", "{}", utcnow())])
    channel = BusinessChannel(config_for(gw), journal)

    async def scenario() -> None:
        signed = await channel.connect()
        assert signed.server_last_serial == 50
        answer = await channel.request(3, b"{}")
        assert answer.serial == 51
        await channel.close()

    run(scenario())
    assert journal.last_serial == 51
    assert not journal.move_past(10)  # never moves back


def test_tls_with_a_client_certificate(
    gateways: Gateways, make_kiosk: Callable[..., Kiosk], tmp_path: Path
):
    from teleserve.kiosk.config import tls_context
    from tests.gateway.tls_support import make_pki

    pki = make_pki(tmp_path)
    gateways.settings = gateways.settings.model_copy(
        update={
            "gateway_tls_cert": pki.server_cert,
            "gateway_tls_key": pki.server_key,
            "gateway_tls_client_ca": pki.ca_cert,
        }
    )
    gw = gateways.start()
    with_cert = tls_context(ca_file=pki.ca_cert, cert_file=pki.client_cert, key_file=pki.client_key)
    without = tls_context(ca_file=pki.ca_cert)
    journal = Journal(tmp_path / "tls.db")

    async def scenario() -> None:
        bound = gw.bound  # type: ignore[attr-defined]
        good = BusinessChannel(
            kiosk_config(bound.business_port, bound.management_port, tls=with_cert), journal
        )
        await good.connect()
        assert (await good.request(3, b"{}")).ok
        await good.close()
        bad = BusinessChannel(
            kiosk_config(bound.business_port, bound.management_port, tls=without), journal
        )
        with pytest.raises((TransportError, ssl.SSLError)):
            await bad.connect()

    run(scenario())


def test_pending_entries_wait_for_the_connection(
    gateways: Gateways,
    fake: FakeServer,
    make_kiosk: Callable[..., Kiosk],
    reserved_ports: ReservedPorts,
):
    """A payment made while the server is down is journaled, and delivered once up."""
    business, management = reserved_ports.take(), reserved_ports.take()
    kiosk = make_kiosk(kiosk_config(business, management))

    async def scenario() -> None:
        agent = await kiosk.boot(wait_online=False)
        entry = agent.journal_request(
            2001,
            {
                "msisdn": "13800138000",
                "amount": 500,
                "notes": [{"value": 500, "count": 1}],
                "cash_box_id": "B",
                "txn_time_ms": agent.clock.now_ms(),
            },
            amount=500,
            cash_box_id="B",
            notes={500: 1},
        )
        await asyncio.sleep(0.3)
        assert agent.journal.entry(entry.serial).state is State.PENDING
        await asyncio.to_thread(gateways.start, business, management)
        await eventually(lambda: agent.journal.entry(entry.serial).state is State.ANSWERED)
        await kiosk.shutdown()

    run(scenario(), timeout=30)
    assert fake.count(2001) == 1


def test_the_key_must_match(gw: GatewayThread, tmp_path: Path):
    """A terminal holding the wrong key never gets a session (10002, hint only)."""
    config = config_for(gw, master_key=bytes(range(1, 33)))
    channel = BusinessChannel(config, Journal(tmp_path / "j.db"))

    async def scenario() -> None:
        with pytest.raises(TransportError, match="10002"):
            await channel.connect()

    run(scenario())
    assert config.master_key != MASTER_KEY
