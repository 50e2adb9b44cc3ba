"""The touch UI served by uvicorn inside the agent process, on the agent's own event loop
(routes call ``CustomerFlows`` directly), plus the idle watchdog.

The socket is bound before the agent starts (``bind_ui_socket``): a port in use is a
configuration error at start-up, not a log line later. Signals stay the agent host's
(``kiosk.cli``): the embedded uvicorn installs no handler of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from teleserve.core.logging import get_logger
from teleserve.kiosk.agent import Agent
from teleserve.kiosk.config import ConfigError
from teleserve.kiosk.devices.sim import SimPanel
from teleserve.kiosk.ui.app import create_app
from teleserve.kiosk.ui.session import IDLE_ENDED, Flash, end_session
from teleserve.kiosk.ui.settings import UiSettings
from teleserve.kiosk.ui.state import KioskUi

log = get_logger("teleserve.kiosk")

HOST = "127.0.0.1"  # the touch screen is on this machine; never another address
WATCH_EVERY_S = 0.5


def bind_ui_socket(port: int) -> socket.socket:
    """The UI's listening socket on loopback (port 0: any free port, for tests)."""
    if not 0 <= port <= 65535:
        raise ConfigError("--ui-port must be 1-65535")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {HOST}:{port} for the touch UI: {exc}") from exc
    return sock


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the agent's host owns SIGINT / SIGTERM


class UiServer:
    def __init__(
        self, settings: UiSettings, sock: socket.socket, *, panel: SimPanel | None = None
    ) -> None:
        self.ui = KioskUi(settings, panel)
        self._sock = sock
        self.port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.ui),
            lifespan="off",
            log_config=None,  # teleserve.core.logging formats uvicorn's loggers
            access_log=False,
            ws="none",
        )
        self._server = _EmbeddedServer(config)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        serve = asyncio.create_task(self._server.serve([self._sock]), name="kiosk-ui")
        self._tasks = [serve, asyncio.create_task(self._watch_idle(), name="kiosk-ui-idle")]
        while not self._server.started:
            if serve.done():
                serve.result()  # raises what stopped it
                raise ConfigError("the touch UI server stopped at start-up")
            await asyncio.sleep(0.01)
        log.info("kiosk.ui_started", url=self.url)

    async def stop(self) -> None:
        self._server.should_exit = True
        for task in self._tasks[1:]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def attach(self, agent: Agent) -> None:
        """The agent now serving (after a start or a remote restart)."""
        self.ui.session.reset()
        self.ui.agent = agent

    async def detach(self) -> None:
        """Before the agent stops: the customer's session ends while it still can."""
        await self.ui.end()
        self.ui.agent = None

    async def _watch_idle(self) -> None:
        """The backstop of the screen's own timer: a browser that died or froze must not
        keep a customer logged in or their notes in escrow."""
        settings, session = self.ui.settings, self.ui.session
        limit = settings.idle_timeout_s + settings.idle_grace_s
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            if session.lock.locked() or session.idle_for() < limit:
                continue
            if not session.has_state(self.ui.agent):
                continue
            try:
                async with session.lock:
                    # Checked again under the lock: a touch may have come meanwhile.
                    if session.idle_for() < limit or not session.has_state(self.ui.agent):
                        continue
                    await end_session(session, self.ui.agent, Flash.message("notice", IDLE_ENDED))
                log.info("kiosk.ui_idle_session_ended")
            except Exception:  # the watchdog must outlive one failed round
                log.exception("kiosk.ui_idle_watch_failed")
