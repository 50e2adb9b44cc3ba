"""The two TSP/1 servers (PROTOCOL.md): business (long connections, :7070) and
management (short connections, :7071), on one asyncio event loop.

Each connection is its own task, and every wait on a peer is bounded (the idle timeout
on the business channel, ``gateway_management_timeout_s`` on the management one), so a
slow or dead terminal holds only its own task. A business connection reads one request,
answers it, and only then decodes the next one: no pipelining, as the protocol says.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Engine

from teleserve.core.logging import get_logger
from teleserve.core.settings import Settings
from teleserve.gateway.dispatch import Dispatcher, Handler, MoneyDesk, Reply
from teleserve.gateway.money import MoneyWriter
from teleserve.gateway.receipts import SiteNames
from teleserve.gateway.sessions import Holder
from teleserve.gateway.stream import FrameDecoder

log = get_logger("teleserve.gateway")

READ_SIZE = 64 * 1024


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The servers' TLS context from settings (``None``: plaintext). TLS 1.2 at least;
    with ``gateway_tls_client_ca`` every client must present a certificate it signed."""
    if settings.gateway_tls_cert is None:
        if settings.gateway_tls_key is not None or settings.gateway_tls_client_ca is not None:
            raise ValueError("gateway TLS needs gateway_tls_cert (and gateway_tls_key)")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.gateway_tls_cert, settings.gateway_tls_key)
    if settings.gateway_tls_client_ca is not None:
        context.load_verify_locations(cafile=settings.gateway_tls_client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Bound:
    host: str
    business_port: int
    management_port: int


class Gateway:
    """Both servers and the state they share (sessions, the terminal cache)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        handlers: Mapping[int, Handler] | None = None,
        money: bool | None = None,
        money_desk: MoneyDesk | None = None,
    ) -> None:
        """``handlers`` None: every area's (``gateway.handlers``) and the money writer;
        given (tests): only those, and the money writer only with ``money=True``.
        ``money_desk``: payments go there instead of to a writer of this process (a
        front process's link to the money writer, ``gateway.processes``)."""
        self.settings = settings
        if money is None:
            money = handlers is None and money_desk is None
        if handlers is None:
            from teleserve.gateway.handlers import installed_handlers

            handlers = installed_handlers()
        self.money = MoneyWriter(engine, settings, SiteNames(engine)) if money else None
        self.dispatcher = Dispatcher(
            engine, settings, handlers=handlers, money=money_desk or self.money
        )
        self.tls = tls_context(settings)
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idle_timeout_s(self) -> float:
        # PROTOCOL.md: a business connection silent for 3 × keepalive_s is closed.
        return 3.0 * self.settings.gateway_keepalive_s

    async def start(self) -> Bound:
        s = self.settings
        # Several gateway processes may share the ports (PostgreSQL scale-out): the
        # kernel spreads new connections over them (SO_REUSEPORT).
        reuse = s.gateway_reuse_port or None
        business = await asyncio.start_server(
            _ends_on_stop(self._business),
            s.gateway_host,
            s.gateway_business_port,
            ssl=self.tls,
            reuse_port=reuse,
        )
        management = await asyncio.start_server(
            _ends_on_stop(self._management),
            s.gateway_host,
            s.gateway_management_port,
            ssl=self.tls,
            reuse_port=reuse,
        )
        self._servers = [business, management]
        bound = Bound(
            s.gateway_host,
            business.sockets[0].getsockname()[1],
            management.sockets[0].getsockname()[1],
        )
        log.info(
            "gateway.listening",
            host=bound.host,
            business_port=bound.business_port,
            management_port=bound.management_port,
            tls=self.tls is not None,
        )
        return bound

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        if self.money is not None:
            await asyncio.to_thread(self.money.stop)

    # -- admission ---------------------------------------------------------------------
    def _admit(self, writer: asyncio.StreamWriter) -> str | None:
        """The peer's address if it may talk to us; ``None``: close without a word."""
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if peer else ""
        if self.tls is None and not self.settings.gateway_plaintext_lab and not is_loopback(host):
            # Plaintext would expose passwords, codes and ID numbers off this machine.
            log.warning("gateway.plaintext_refused", peer=host)
            return None
        if self.dispatcher.address_blocked(host):
            return None
        return host

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    # -- business channel ----------------------------------------------------------------
    async def _business(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track()
        host = self._admit(writer)
        if host is None:
            await _close(writer)
            return
        holder = Holder(close=writer.close, peer=host)
        decoder = FrameDecoder()
        try:
            deadline = time.monotonic() + self.idle_timeout_s
            while True:
                item = decoder.next()
                if item is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break  # idle: silent for 3 × keepalive_s
                    try:
                        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow
                        # the cancellation that stops the server.
                        async with asyncio.timeout(remaining):
                            data = await reader.read(READ_SIZE)
                    except TimeoutError:
                        break
                    if not data:
                        break  # peer closed (a partial frame left: truncated, no answer)
                    decoder.feed(data)
                    continue
                reply = await self.dispatcher.business(item, holder)
                if not await _send(writer, reply):
                    break
                if reply.close:
                    break
                deadline = time.monotonic() + self.idle_timeout_s
        except (ConnectionError, ssl.SSLError, OSError):
            pass  # the peer vanished; its session ends below
        finally:
            self.dispatcher.sessions.end(holder)
            await _close(writer)

    # -- management channel --------------------------------------------------------------
    async def _management(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._track()
        host = self._admit(writer)
        if host is None:
            await _close(writer)
            return
        decoder = FrameDecoder()
        try:
            deadline = time.monotonic() + self.settings.gateway_management_timeout_s
            while (item := decoder.next()) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    async with asyncio.timeout(remaining):
                        data = await reader.read(READ_SIZE)
                except TimeoutError:
                    return
                if not data:
                    return
                decoder.feed(data)
            # One request, one answer, close: anything sent after the request is ignored.
            await _send(writer, await self.dispatcher.management(item, host))
        except (ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            await _close(writer)


async def _send(writer: asyncio.StreamWriter, reply: Reply) -> bool:
    """Write the reply's frames; ``False`` when the peer is gone."""
    if not reply.frames:
        return True
    if writer.is_closing():
        return False
    for frame in reply.frames:
        writer.write(frame)
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        return False
    return True


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await writer.wait_closed()


ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _ends_on_stop(handler: ConnectionHandler) -> ConnectionHandler:
    """``handler``, ending normally when ``Gateway.stop`` cancels its connection's task.

    On Python 3.11 asyncio's stream protocol asks each finished connection task for its
    exception, which raises for a cancelled one and is logged as "Exception in callback"
    with a traceback — one per connection at every shutdown (fixed in Python 3.12)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except asyncio.CancelledError:
            writer.close()  # the gateway is stopping: nothing more to say

    return handle


class GatewayThread:
    """The gateway on its own event loop in a background thread (``serve --role all``
    runs it beside the HTTP app; tests use it too)."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        handlers: Mapping[int, Handler] | None = None,
        money: bool | None = None,
    ) -> None:
        self.gateway = Gateway(engine, settings, handlers=handlers, money=money)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="tsp-gateway", daemon=True)
        self._started = threading.Event()
        self._bound: Bound | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._bound = self.loop.run_until_complete(self.gateway.start())
        except BaseException as exc:  # reported to start(), which raises it
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.gateway.stop())
        self.loop.close()

    @property
    def tls(self) -> bool:
        return self.gateway.tls is not None

    def start(self) -> Bound:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        assert self._bound is not None
        return self._bound

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)


async def serve_forever(engine: Engine, settings: Settings) -> None:
    """``serve --role gateway``: run until cancelled."""
    gateway = Gateway(engine, settings)
    await gateway.start()
    try:
        await asyncio.Event().wait()
    finally:
        await gateway.stop()
