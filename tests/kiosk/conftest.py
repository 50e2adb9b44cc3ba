"""The kiosk agent against the real TSP/1 gateway on loopback.

The server's money and fleet handlers are being written elsewhere, so ``FakeServer``
installs handlers of its own for the serv_types the agent uses, answering exactly as
PROTOCOL.md says. The gateway itself is the real one (checks, MACs, sessions, the serial
record), so resends, ``10003`` and idempotency are the server's, not a fake's.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine

from teleserve.core.settings import Settings
from teleserve.core.uow import UnitOfWork
from teleserve.gateway.checks import Accepted
from teleserve.gateway.dispatch import Handler, Result
from teleserve.gateway.errors import TspError
from teleserve.gateway.processes import reserve_port
from teleserve.gateway.server import GatewayThread
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.availability import Link
from teleserve.kiosk.config import Endpoint, KioskConfig
from teleserve.kiosk.devices.sim import SimPanel
from teleserve.kiosk.journal import Journal
from tests.terminals.conftest import install_key, register, tree  # noqa: F401 (fixtures)

MASTER_KEY = bytes(range(32))
TERMINAL = "KIOSK-0001"
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 20) -> T:
    async def bounded() -> T:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            for task in asyncio.all_tasks():
                task.print_stack()
            raise

    return asyncio.run(bounded())


async def eventually(check: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ReservedPorts:
    """Ports for a gateway that starts later in the test, held meanwhile: each is bound
    with SO_REUSEPORT and never listened on, so the agent's connections are refused as on
    a free port, while no other process (another xdist worker's server) can take it in
    between — a plain free port was taken so once, and the agent talked to an HTTP server.
    A gateway started with ``gateway_reuse_port`` binds it beside the reservation."""

    def __init__(self) -> None:
        self._held: list[socket.socket] = []

    def take(self) -> int:
        sock = reserve_port("127.0.0.1", 0)
        self._held.append(sock)
        port: int = sock.getsockname()[1]
        return port

    def release(self) -> None:
        for sock in self._held:
            sock.close()
        self._held = []


@pytest.fixture
def reserved_ports() -> Iterator[ReservedPorts]:
    ports = ReservedPorts()
    yield ports
    ports.release()


@dataclass
class FakeServer:
    """The handlers and what they saw. Handlers run in the gateway's worker threads."""

    calls: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    raw: dict[int, list[bytes]] = field(default_factory=dict)
    payment_status: str = "completed"
    status_now: dict[int, str] = field(default_factory=dict)  # serial → TXN_STATUS answer
    payments: dict[int, dict[str, Any]] = field(default_factory=dict)  # serial → 2001/2002 body
    commands: list[dict[str, str]] = field(default_factory=list)
    gate: threading.Event | None = None  # when set up, 2001 waits for it (a slow server)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _seen(self, accepted: Accepted) -> tuple[int, dict[str, Any]]:
        serv_type = accepted.serv_type.code
        with self.lock:
            self.calls.setdefault(serv_type, []).append(accepted.body)
            self.raw.setdefault(serv_type, []).append(accepted.frame.body)
        return accepted.frame.header.serial, accepted.body

    def count(self, serv_type: int) -> int:
        return len(self.calls.get(serv_type, []))

    # -- business -------------------------------------------------------------------
    def msisdn_check(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        _, body = self._seen(accepted)
        payable = body["msisdn"].startswith("138")
        return Result({"payable": payable, "customer_name": "张*" if payable else ""})

    def payment(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        serial, body = self._seen(accepted)
        if self.gate is not None:
            self.gate.wait(15)
        with self.lock:
            self.payments[serial] = body
        status = self.payment_status
        answer: dict[str, Any] = {"txn_id": f"TXN{serial:06d}", "status": status}
        if status == "completed":
            answer["balance_after"] = 5000 + body["amount"]
        answer["receipt"] = {"lines": [f"serial {serial}", f"amount {body['amount']}", status]}
        return Result(answer)

    def reversal(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        serial, body = self._seen(accepted)
        original = self.payments.get(body["original_serial"])
        if original is None:
            raise TspError("20008")
        if "card" in original:
            return Result({"txn_id": f"REV{serial:06d}", "status": "voided", "balance_after": 0})
        return Result(
            {
                "txn_id": f"REV{serial:06d}",
                "status": "held",
                "held_reason": "reversed",
                "balance_after": 0,
            }
        )

    def txn_status(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        _, body = self._seen(accepted)
        original = body["original_serial"]
        if original not in self.payments:
            raise TspError("20008")
        status = self.status_now.get(original, "pending")
        out: dict[str, Any] = {"txn_id": f"TXN{original:06d}", "status": status}
        if status == "completed":
            out["balance_after"] = 9999
        return Result(out)

    def receipt(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        _, body = self._seen(accepted)
        if body["original_serial"] not in self.payments:
            raise TspError("20008")
        return Result({"receipt": {"lines": [f"REPRINT {body['original_serial']}"]}})

    def login(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        _, body = self._seen(accepted)
        if body.get("secret") not in (None, "123456"):
            raise TspError("20001")
        return Result(
            {"customer_token": "ab" * 16, "level": 1, "expires_in_s": 300, "customer_name": "张*"}
        )

    def summary(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        self._seen(accepted)
        return Result({"msisdn": "13800138000", "status": "active", "bars": [], "balance": 100})

    def logout(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        self._seen(accepted)
        return Result({})

    # -- management --------------------------------------------------------------------
    def status_report(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        self._seen(accepted)
        with self.lock:
            commands, self.commands = self.commands, []
        return Result({"commands": commands, "config_version": 1})

    def alarm(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        serial, _ = self._seen(accepted)
        return Result({"alarm_id": f"AL{serial}"})

    def collection(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        serial, body = self._seen(accepted)
        return Result(
            {"collection_id": f"C{serial}", "expected": body["counted"], "discrepancy": 0}
        )

    def config_pull(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        self._seen(accepted)
        return Result({"config_version": 2, "config": {"idle_logout_s": 120}})

    def ack(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        self._seen(accepted)
        return Result({})

    def journal_upload(self, uow: UnitOfWork, accepted: Accepted) -> Result:
        _, body = self._seen(accepted)
        serials = [e["serial"] for e in body["entries"]]
        known = [s for s in serials if s in self.payments]
        missing = [s for s in serials if s not in self.payments]
        return Result(
            {
                "matched": len(known),
                "missing_on_server": missing,
                "missing_on_terminal": [],
                "mismatched": [],
            }
        )

    def handlers(self) -> dict[int, Handler]:
        return {
            1001: self.login,
            1003: self.logout,
            1010: self.summary,
            1015: self.msisdn_check,
            2001: self.payment,
            2002: self.payment,
            2009: self.reversal,
            2010: self.receipt,
            2012: self.txn_status,
            9001: self.status_report,
            9002: self.alarm,
            9003: self.collection,
            9004: self.config_pull,
            9005: self.ack,
            9006: self.journal_upload,
        }


@pytest.fixture
def terminal(register: Callable[..., Any], engine: Engine) -> str:  # noqa: F811
    register(TERMINAL)
    install_key(engine, TERMINAL, MASTER_KEY)
    return TERMINAL


@pytest.fixture
def fake() -> FakeServer:
    return FakeServer()


class Gateways:
    def __init__(self, engine: Engine, settings: Settings, fake: FakeServer) -> None:
        self.engine = engine
        self.settings = settings
        self.fake = fake
        self.running: list[GatewayThread] = []

    def start(self, business_port: int = 0, management_port: int = 0) -> GatewayThread:
        s = self.settings.model_copy(
            update={
                "gateway_business_port": business_port,
                "gateway_management_port": management_port,
                "gateway_terminal_cache_s": 0,
                # Given ports come from ``ReservedPorts``, held with SO_REUSEPORT.
                "gateway_reuse_port": bool(business_port or management_port),
            }
        )
        thread = GatewayThread(self.engine, s, handlers=self.fake.handlers())
        thread.bound = thread.start()  # type: ignore[attr-defined]
        self.running.append(thread)
        return thread

    def stop_all(self) -> None:
        if self.fake.gate is not None:
            self.fake.gate.set()
        for thread in self.running:
            thread.stop()
        self.running = []


@pytest.fixture
def gateways(
    engine: Engine,
    settings: Settings,
    fake: FakeServer,
    terminal: str,
) -> Iterator[Gateways]:
    # These tests pin the terminal side against the protocol, not the server's money
    # path: the gateway runs without its money writer and the test's handlers answer
    # 2001 / 2002 (tests/e2e and tests/gateway/test_money.py run the real writer).
    gws = Gateways(engine, settings, fake)
    yield gws
    gws.stop_all()


@pytest.fixture
def gw(gateways: Gateways) -> GatewayThread:
    return gateways.start()


def kiosk_config(business_port: int, management_port: int, **changes: Any) -> KioskConfig:
    values: dict[str, Any] = {
        "terminal_id": TERMINAL,
        "master_key": MASTER_KEY,
        "endpoint": Endpoint("127.0.0.1", business_port, management_port),
        "answer_timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "backoff_base_s": 0.05,
        "backoff_max_s": 0.4,
        "retry_interval_s": 0.2,
        "status_interval_s": 60.0,
        "txn_status_interval_s": 0.2,
    }
    values.update(changes)
    return KioskConfig(**values)


def config_for(gw: GatewayThread, **changes: Any) -> KioskConfig:
    bound = gw.bound  # type: ignore[attr-defined]
    return kiosk_config(bound.business_port, bound.management_port, **changes)


@dataclass
class Kiosk:
    """One agent on a journal file, with its sim devices (which outlive the agent, as
    hardware outlives the kiosk PC's software)."""

    config: KioskConfig
    panel: SimPanel
    journal_path: Path
    agent: Agent | None = None
    journal: Journal | None = None

    async def boot(self, wait_online: bool = True) -> Agent:
        self.journal = Journal(self.journal_path)
        self.agent = Agent(self.config, self.panel.devices, self.journal)
        await self.agent.start()
        if wait_online:
            agent = self.agent
            await eventually(lambda: agent.link is Link.ONLINE, what="the agent online")
        return self.agent

    async def crash(self) -> None:
        """The process dies: tasks gone, connection dropped, nothing flushed or signed off
        beyond what the journal already committed."""
        assert self.agent is not None and self.journal is not None
        for task in self.agent._tasks:
            task.cancel()
        await asyncio.gather(*self.agent._tasks, return_exceptions=True)
        await self.agent.business.close()
        self.journal.close()
        self.agent = None
        self.journal = None

    async def shutdown(self) -> None:
        if self.agent is not None:
            await self.agent.stop()
        if self.journal is not None:
            self.journal.close()
        self.agent = None
        self.journal = None


@pytest.fixture
def make_kiosk(tmp_path: Path) -> Callable[[KioskConfig], Kiosk]:
    def factory(config: KioskConfig, panel: SimPanel | None = None) -> Kiosk:
        return Kiosk(config, panel or SimPanel(), tmp_path / "kiosk" / "journal.db")

    return factory
