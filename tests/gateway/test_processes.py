"""The gateway as front processes feeding the money writer of the serve process
(``gateway.processes``, ``settings.gateway_processes``), on both databases: payments
recorded once and answered the same on a resend, a SIGN_ON in one process ending the
session held in another, a killed front started again, and a front that loses the
writer closing its connections unanswered."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from teleserve.core.settings import Settings
from teleserve.gateway.link import PAY, pack_job, unpack_job
from teleserve.gateway.money import Answer
from teleserve.gateway.processes import (
    CLEAN_EXIT_GRACE_S,
    SUPERVISE_EVERY_S,
    GatewayProcesses,
    MoneyService,
    RemoteMoneyWriter,
    private_socket_path,
    remove_stale_socket_dirs,
)
from teleserve.payments.models import payment_table
from tests.terminals.conftest import install_key, register, tree  # noqa: F401 (fixtures)

from .test_money import Kiosk, balance, cash, gateway_test_settings, line  # noqa: F401
from .tsp_client import body_of, mac_ok


@pytest.fixture
def fronts(
    engine: Engine,
    settings: Settings,
    register: Callable[..., Any],  # noqa: F811
    line: None,  # noqa: F811
) -> Iterator[GatewayProcesses]:
    s = gateway_test_settings(engine, settings, register, gateway_processes=2)
    gateway = GatewayProcesses(engine, s)
    gateway.bound = gateway.start()  # type: ignore[attr-defined]
    yield gateway
    gateway.stop()


class Connection(Kiosk):
    """One signed-on business connection of the test terminal, whichever front holds it."""

    def ask_raw(self, frame: bytes) -> tuple[str, Any]:
        reply = self.client.ask(frame)
        assert mac_ok(reply, self.key)
        return reply.header.err_number, body_of(reply)

    def closed_by_server(self, wait_s: float = 10.0) -> bool:
        sock: socket.socket = self.client.sock
        sock.settimeout(wait_s)
        try:
            return sock.recv(1) == b""
        except ConnectionError:
            return True
        except TimeoutError:
            return False


def _payments(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(payment_table)).scalar_one())


def test_payments_go_through_a_front_to_the_writer_once(
    fronts: GatewayProcesses, engine: Engine, make_uow: Callable[..., Any]
):
    conn = Connection(fronts)
    body = cash(20000, [{"value": 10000, "count": 2}])
    err, first = conn.ask_raw(conn.raw(10, 2001, body))
    assert err == "00000"
    assert first["status"] == "completed"
    assert first["balance_after"] == 20000
    # The same serial and body again, on another connection and session (which may be
    # in the other front): the recorded answer, nothing recorded twice.
    conn.client.close()
    again = Connection(fronts)
    err, second = again.ask_raw(again.raw(10, 2001, body))
    assert (err, second) == ("00000", first)
    assert _payments(engine) == 1
    assert balance(make_uow) == 20000
    again.client.close()


def test_a_sign_on_anywhere_closes_the_older_connection(fronts: GatewayProcesses):
    # Successive connections land on either front (the kernel's choice): each new
    # SIGN_ON must close the one before, in its own process or in the other.
    older = Connection(fronts)
    for _ in range(6):
        newer = Connection(fronts)
        assert older.closed_by_server(), "the older session outlived a newer SIGN_ON"
        older.client.close()
        older = newer
    older.client.close()


def test_a_killed_front_is_started_again(fronts: GatewayProcesses, engine: Engine):
    victims = [process.pid for process, _ in fronts._fronts]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        alive = [p.pid for p, _ in fronts._fronts if p.is_alive() and p.pid not in victims]
        if len(alive) == 2:
            try:
                conn = Connection(fronts)
                break
            except (OSError, AssertionError):
                pass  # restarted but not listening yet
        assert time.monotonic() < deadline, "the fronts were not started again"
        time.sleep(0.2)
    err, body = conn.ask_raw(conn.raw(11, 2001, cash()))
    assert (err, body["status"]) == ("00000", "completed")
    assert _payments(engine) == 1
    conn.client.close()


def test_a_front_that_stopped_cleanly_is_replaced_after_a_grace(fronts: GatewayProcesses):
    """A front's clean exit (SIGTERM) is what a whole process group's stop looks like, so
    the supervisor waits CLEAN_EXIT_GRACE_S for its own stop before starting another."""
    process, _ = fronts._fronts[0]
    os.kill(process.pid, signal.SIGTERM)
    process.join(10)
    assert process.exitcode == 0
    stopped_at = time.monotonic()
    deadline = stopped_at + 30
    while fronts._fronts[0][0] is process:
        assert time.monotonic() < deadline, "the front was not started again"
        time.sleep(0.05)
    assert time.monotonic() - stopped_at >= CLEAN_EXIT_GRACE_S - SUPERVISE_EVERY_S


def test_the_link_relays_sign_ons_and_reports_a_lost_writer(tmp_path: Path):
    """In one event loop: two fronts' ends of the link and the service; the service's
    writer is a stand-in that never answers, so a payment is pending when the link goes."""

    class Silent:
        def enqueue(self, accepted: Any, entry: Any) -> asyncio.Future[Any]:
            return asyncio.get_running_loop().create_future()

    async def scenario() -> None:
        path = private_socket_path()
        service = MoneyService(Silent())  # type: ignore[arg-type]
        await service.start(path)
        heard: list[tuple[str, str]] = []
        first, second = RemoteMoneyWriter(path), RemoteMoneyWriter(path)
        await first.connect(lambda t, s: heard.append(("first", t + "/" + s)))
        await second.connect(lambda t, s: heard.append(("second", t + "/" + s)))
        await asyncio.sleep(0.05)
        first.announce_sign_on("K-1", "0000abcd")
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert heard == [("second", "K-1/0000abcd")]  # not echoed to its sender
        accepted, entry = _sample_job()
        pending = asyncio.ensure_future(first.submit(accepted, entry))
        await asyncio.sleep(0.05)
        await service.stop()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(pending, 5)
        await asyncio.wait_for(first.lost.wait(), 5)
        with pytest.raises(ConnectionError):
            await first.submit(accepted, entry)
        await first.close()
        await second.close()
        path.unlink()

    asyncio.run(scenario())


def _sample_job() -> tuple[Any, Any]:
    from teleserve.gateway.catalog import SERV_TYPES, Channel
    from teleserve.gateway.checks import Accepted, TerminalState, TerminalView
    from teleserve.gateway.directory import TerminalEntry
    from teleserve.gateway.frame import Frame, Header
    from teleserve.terminals.models import DeviceMode

    view = TerminalView("K-1", TerminalState.IN_SERVICE, (b"k" * 32,))
    header = Header("K-1", 7, 2001, "Q", True, "00000", 1_700_000_000_000, "0000abcd")
    accepted = Accepted(
        Frame(header, b'{"a":1}', b"m" * 32),
        {"a": 1},
        SERV_TYPES[2001],
        view,
        Channel.BUSINESS,
        b"s" * 32,
        "0000abcd",
    )
    return accepted, TerminalEntry(view, "/TS/GD/GZ/", DeviceMode.sim, "GZ01")


def test_a_job_crosses_the_link_unchanged():
    accepted, entry = _sample_job()
    assert unpack_job(pack_job(accepted, entry)) == (accepted, entry)
    assert Answer("00000", b"{}") == Answer("00000", b"{}")


def test_a_killed_serve_process_leaves_no_link_directory_behind(tmp_path: Path):
    """The next start removes the link directories of serve processes that are gone."""
    # A process id that is surely free: a child that has exited and been reaped.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"teleserve-gateway-{dead.pid}-abc"
    stale.mkdir()
    (stale / "money.sock").touch()
    alive = tmp_path / f"teleserve-gateway-{os.getpid()}-def"
    alive.mkdir()
    unrelated = tmp_path / "teleserve-gateway-notapid-x"
    unrelated.mkdir()
    assert remove_stale_socket_dirs(tmp_path) == [stale]
    assert not stale.exists() and alive.exists() and unrelated.exists()
    path = private_socket_path()
    try:
        assert path.parent.name.startswith(f"teleserve-gateway-{os.getpid()}-")
        assert path.parent.stat().st_mode & 0o777 == 0o700
    finally:
        path.parent.rmdir()


class _CountingWriter:
    """What ``MoneyService`` needs of a money writer: the batches it is handed."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.max_batch = 256
        self.batches: list[int] = []

    def settle(self, jobs: list[Any]) -> list[Answer]:
        self.batches.append(len(jobs))
        return [Answer("00000", b"{}") for _ in jobs]


class _SilentLink:
    def send(self, message: Any) -> None:
        pass


@pytest.mark.parametrize(("window_s", "batches"), [(0.0, [1, 1, 1]), (0.2, [3])])
def test_the_inline_writer_waits_its_window_to_gather_a_batch(window_s, batches):
    """``gateway_money_window_ms`` holds on SQLite's inline writer too: payments arriving
    within the window are recorded together; without one, each turn's arrivals go."""
    packed = pack_job(*_sample_job())
    writer = _CountingWriter(window_s)
    service = MoneyService(writer, inline=True)  # type: ignore[arg-type]

    async def arrive() -> None:
        for request_id in range(3):
            service._on_message(_SilentLink(), (PAY, request_id, packed))  # type: ignore[arg-type]
            await asyncio.sleep(0.02)
        await asyncio.sleep(window_s + 0.2)

    asyncio.run(arrive())
    assert writer.batches == batches
