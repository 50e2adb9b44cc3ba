"""The kiosk with its touch UI against the real server, for the HTTP and browser tests.

The server side is the real one: the gateway with every area's handlers and the money
writer (``GatewayThread(engine, settings)``), over a world with a registered customer
who has a service password, a prepaid line and a ledger balance
(``tests.gateway.test_customer_handlers.people``: 13800138000, 张三, ¥50.00).

The kiosk side runs as ``teleserve kiosk`` does (``kiosk.cli.serve_kiosk`` with a
``UiServer``), on its own event loop in a thread: the tests (and Playwright's sync API)
keep the main thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import Engine, select

from teleserve.core.settings import Settings
from teleserve.gateway.server import GatewayThread
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.availability import Link
from teleserve.kiosk.cli import serve_kiosk
from teleserve.kiosk.config import KioskConfig
from teleserve.kiosk.devices.sim import SimPanel
from teleserve.kiosk.ui.server import UiServer, bind_ui_socket
from teleserve.kiosk.ui.settings import UiSettings
from teleserve.payments.models import payment_table

from .conftest import kiosk_config

T = TypeVar("T")
NUMBER = "13800138000"  # people's 张三: prepaid, service password PASSWORD, ¥50.00
START_BALANCE = 5000
PAN = "6222021234567890123"


class KioskProcess:
    """Agent + touch UI on a loop of their own, as the ``teleserve kiosk`` process runs
    them."""

    def __init__(self, config: KioskConfig, journal_path: Path, settings: UiSettings) -> None:
        self.config = config
        self.panel = SimPanel()
        self.journal_path = journal_path
        self.settings = settings
        self.ui: UiServer | None = None
        self.loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kiosk-ui-test", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            self.ui = UiServer(self.settings, bind_ui_socket(0), panel=self.panel)
            await self.ui.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        try:
            await serve_kiosk(
                self.config, self.panel.devices, self.journal_path, self._stop, ui=self.ui
            )
        finally:
            await self.ui.stop()

    def start(self) -> KioskProcess:
        self._thread.start()
        self._ready.wait(20)
        if self._error is not None:
            raise self._error
        return self

    @property
    def url(self) -> str:
        assert self.ui is not None
        return self.ui.url

    @property
    def agent(self) -> Agent:
        assert self.ui is not None and self.ui.ui.agent is not None
        return self.ui.ui.agent

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        """Run ``coro`` on the kiosk's loop (the agent is not thread-safe)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def wait_online(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ui = self.ui.ui if self.ui is not None else None
            agent = ui.agent if ui is not None else None
            if agent is not None and agent.link is Link.ONLINE:
                return
            assert time.monotonic() < deadline, "the kiosk did not come online"
            time.sleep(0.05)

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)


def payments_of(engine: Engine) -> list[Any]:
    """The payments taken at a kiosk (not the world's opening top-up)."""
    query = (
        select(payment_table)
        .where(payment_table.c.channel.startswith("kiosk"))
        .order_by(payment_table.c.created_at)
    )
    with engine.connect() as conn:
        return list(conn.execute(query))


@pytest.fixture
def real_gateway(
    engine: Engine, settings: Settings, terminal: str, people: Any
) -> Iterator[GatewayThread]:
    s = settings.model_copy(
        update={
            "gateway_business_port": 0,
            "gateway_management_port": 0,
            "gateway_terminal_cache_s": 0,
        }
    )
    thread = GatewayThread(engine, s)  # every area's handlers and the money writer
    thread.bound = thread.start()  # type: ignore[attr-defined]
    yield thread
    thread.stop()


@pytest.fixture
def start_kiosk(
    real_gateway: GatewayThread, tmp_path: Path
) -> Iterator[Callable[..., KioskProcess]]:
    started: list[KioskProcess] = []

    def factory(**ui_settings: Any) -> KioskProcess:
        bound = real_gateway.bound  # type: ignore[attr-defined]
        config = kiosk_config(bound.business_port, bound.management_port)
        kiosk = KioskProcess(config, tmp_path / "kiosk" / "journal.db", UiSettings(**ui_settings))
        started.append(kiosk.start())
        kiosk.wait_online()
        return kiosk

    yield factory
    for kiosk in started:
        kiosk.stop()


def client_for(kiosk: KioskProcess) -> httpx.Client:
    return httpx.Client(base_url=kiosk.url, timeout=30, follow_redirects=True)
