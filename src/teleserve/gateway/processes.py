"""The gateway as several processes (``settings.gateway_processes`` > 0).

Why: one Python process runs one thread of Python at a time. In one process the TSP work
of thousands of connections (frames, MACs, sessions, answers) and the money writer's
batches take turns on the same GIL, and a payment costs about 0.95 ms of one core in all
(BENCHMARKS.md, "Kiosk load"). Split, the money writer keeps a core of its own.

The arrangement::

    terminals ──TCP──▶ front process 1 ─┐   Unix socket (gateway.link)
    terminals ──TCP──▶ front process 2 ─┼──────────────▶ the serve process:
                        …               ┘                 MoneyService → MoneyWriter
                                                          (group commit, one writer
                                                          on SQLite)

- **Front processes** take the TSP connections on both channels (the kernel spreads new
  connections over them: ``SO_REUSEPORT``), run the order of checks, sessions, the
  handlers of everything that is not a payment (with their own database connections:
  SQLite allows readers beside its writer), and hand each authentic CASH_PAYMENT /
  CARD_PAYMENT to the money writer over the link.
- **The serve process** keeps the money writer: SQLite has one writer whatever the
  number of processes, and its batches grow when every front feeds the same queue.
- **Sessions across processes:** a SIGN_ON goes over the link to the other fronts, which
  close the terminal's older connection (PROTOCOL.md: a new SIGN_ON ends the old
  session) — the same rule as within one process.
- **Failure:** a front that dies is started again (its terminals reconnect and resend;
  a payment committed and not answered is answered from its serial record). A front that
  loses the link (the serve process died) closes its connections without answering and
  exits: the writer may have committed, so ``90001`` ("nothing was changed") would be a
  lie. The terminals resend to the restarted server and get the recorded answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from teleserve.core.logging import get_logger
from teleserve.core.settings import Settings
from teleserve.gateway.checks import Accepted
from teleserve.gateway.directory import TerminalEntry
from teleserve.gateway.link import ANSWER, PAY, SIGNED_ON, Link, Message, pack_job, unpack_job
from teleserve.gateway.money import Job, MoneyWriter, Outcome
from teleserve.gateway.receipts import SiteNames
from teleserve.gateway.server import Bound

log = get_logger("teleserve.gateway.processes")

READY_TIMEOUT_S = 60.0  # a front imports the package and opens its database first
SUPERVISE_EVERY_S = 0.5
# A front that exited cleanly was told to stop: by this process, or with the whole process
# group (Ctrl-C, ``systemctl stop``, ``timeout``), in which case this process is stopping
# too. It is started again only if this process still runs after this long.
CLEAN_EXIT_GRACE_S = 2.0


_SOCKET_DIR_PREFIX = "teleserve-gateway-"


def private_socket_path() -> Path:
    """A socket path in a fresh directory only this user may enter (mode 0700): nothing
    else on the machine can connect to the link and hand it pickles. The directory's
    name carries this process's id, so the next start can remove what a killed serve
    process left behind (``remove_stale_socket_dirs``)."""
    remove_stale_socket_dirs()
    folder = Path(tempfile.mkdtemp(prefix=f"{_SOCKET_DIR_PREFIX}{os.getpid()}-"))
    folder.chmod(0o700)
    return folder / "money.sock"


def remove_stale_socket_dirs(parent: Path | None = None) -> list[Path]:
    """Remove this user's link directories whose serve process is gone (a ``kill -9``
    skips the clean-up in ``GatewayProcesses.stop``); returns what was removed. A
    directory whose process id now belongs to another live process stays: harmless."""
    removed = []
    for folder in (parent or Path(tempfile.gettempdir())).glob(f"{_SOCKET_DIR_PREFIX}*-*"):
        pid_text = folder.name.removeprefix(_SOCKET_DIR_PREFIX).split("-", 1)[0]
        try:
            if not pid_text.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        except OSError:
            continue  # alive under another user (EPERM), or gone meanwhile
    return removed


# -- the serve process's side ------------------------------------------------------------
class MoneyService:
    """Takes payments from the front processes and gives them to the money writer;
    passes each SIGN_ON on to the other fronts.

    ``inline`` (SQLite): the batches are recorded on this event loop's own thread. While
    one batch is written the loop reads nothing, so the payments arriving meanwhile wait
    in the sockets and make up the next batch: group commit, as with the writer thread,
    without a second thread taking the GIL from the writer at every SQLite call (measured:
    a batch took about twice as long beside the thread that read the link). Otherwise
    (PostgreSQL) the writer's threads record batches side by side.
    """

    def __init__(self, money: MoneyWriter, *, inline: bool = False) -> None:
        self.money = money
        self.inline = inline
        self._links: set[Link] = set()
        self._server: asyncio.AbstractServer | None = None
        self._waiting: list[tuple[Link, int, Job]] = []
        self._drain_due = False
        self._stopped = False

    async def start(self, path: Path) -> None:
        self._server = await asyncio.start_unix_server(self._serve_front, str(path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close()
        # What is waiting is recorded now (the terminals' resends get the recorded
        # answers: the links are closed), and no batch after this: the owner stops the
        # writer, and its connection, next (``GatewayProcesses.stop``).
        while self._waiting:
            self._drain()
        self._stopped = True

    async def _serve_front(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        link = Link(reader, writer)
        self._links.add(link)
        try:
            while True:
                for message in await link.receive():
                    self._on_message(link, message)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the front went away; answers still due to it are dropped
        finally:
            self._links.discard(link)
            link.close()

    def _on_message(self, link: Link, message: Message) -> None:
        if message[0] == PAY:
            accepted, entry = unpack_job(message[2])
            if self.inline:
                self._waiting.append((link, message[1], Job(accepted, entry)))
                self._schedule_drain()
                return
            future = self.money.enqueue(accepted, entry)
            future.add_done_callback(partial(_answer, link, message[1]))
        elif message[0] == SIGNED_ON:
            for other in self._links:
                if other is not link:
                    other.send(message)
        else:
            log.error("gateway.link_unknown_message", kind=message[0])

    def _schedule_drain(self) -> None:
        """The next batch is recorded on a later turn of the loop (after the writer's
        window, if it has one), once, whatever arrives meanwhile."""
        if self._drain_due:
            return
        self._drain_due = True
        loop = asyncio.get_running_loop()
        if self.money.window_s > 0:
            loop.call_later(self.money.window_s, self._drain)
        else:
            loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Record one batch of what is waiting (blocking the loop meanwhile), answer it,
        and come back after the loop has read what arrived in the meantime."""
        self._drain_due = False
        if self._stopped:
            return
        size = self.money.max_batch
        batch, self._waiting = self._waiting[:size], self._waiting[size:]
        if not batch:
            return
        outcomes = self.money.settle([job for _, _, job in batch])
        for (link, request_id, _), outcome in zip(batch, outcomes, strict=True):
            link.send((ANSWER, request_id, outcome))
        if self._waiting:
            self._drain_due = True
            asyncio.get_running_loop().call_soon(self._drain)


def _answer(link: Link, request_id: int, future: asyncio.Future[Outcome]) -> None:
    if not future.cancelled():
        link.send((ANSWER, request_id, future.result()))


# -- a front process's side ----------------------------------------------------------------
class RemoteMoneyWriter:
    """The money writer as a front process sees it: ``submit`` like ``MoneyWriter``'s,
    answered over the link."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._link: Link | None = None
        self._pending: dict[int, asyncio.Future[Outcome]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()

    async def connect(self, on_signed_on: Callable[[str, str], None]) -> None:
        reader, writer = await asyncio.open_unix_connection(str(self.path))
        self._link = Link(reader, writer)
        self._reader = asyncio.get_running_loop().create_task(self._read(on_signed_on))

    async def submit(self, accepted: Accepted, entry: TerminalEntry) -> Outcome:
        if self._link is None or self.lost.is_set():
            raise ConnectionError("the money writer is gone")
        request_id = next(self._ids)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        self._link.send((PAY, request_id, pack_job(accepted, entry)))
        try:
            return await future
        finally:
            self._pending.pop(request_id, None)

    def announce_sign_on(self, terminal_id: str, session_id: str) -> None:
        if self._link is not None and not self.lost.is_set():
            self._link.send((SIGNED_ON, terminal_id, session_id))

    async def _read(self, on_signed_on: Callable[[str, str], None]) -> None:
        assert self._link is not None
        try:
            while True:
                for message in await self._link.receive():
                    if message[0] == ANSWER:
                        future = self._pending.get(message[1])
                        if future is not None and not future.done():
                            future.set_result(message[2])
                    elif message[0] == SIGNED_ON:
                        on_signed_on(message[1], message[2])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.lost.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the money writer is gone"))

    async def close(self) -> None:
        if self._link is not None:
            self._link.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def front_main(settings: Settings, path: Path, ready: Connection) -> None:
    """A front process (started by ``GatewayProcesses``; ``spawn``, not ``fork``: the
    serve process has threads and database connections a fork would copy)."""
    from teleserve.core.db import make_engine
    from teleserve.core.logging import configure_logging
    from teleserve.core.settings import use_settings

    # Ctrl-C reaches the whole process group: the serve process stops the fronts itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    use_settings(settings)  # handlers that read the process-wide settings see the same
    configure_logging(settings.log_level, json_output=settings.log_json)
    engine = make_engine(settings.database_url)
    try:
        asyncio.run(_run_front(engine, settings, path, ready))
    finally:
        engine.dispose()


async def _run_front(engine: Engine, settings: Settings, path: Path, ready: Connection) -> None:
    from teleserve.gateway.server import Gateway

    remote = RemoteMoneyWriter(path)
    gateway = Gateway(engine, settings, money_desk=remote)
    await remote.connect(gateway.dispatcher.session_elsewhere)
    gateway.dispatcher.on_sign_on = remote.announce_sign_on
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    bound = await gateway.start()
    gc.freeze()  # start-up's objects out of the collector's full passes (as in serve)
    with contextlib.suppress(OSError):  # a restarted front's parent does not wait
        ready.send((bound.business_port, bound.management_port))
    ready.close()
    stopped = loop.create_task(stop.wait())
    lost = loop.create_task(remote.lost.wait())
    await asyncio.wait({stopped, lost}, return_when=asyncio.FIRST_COMPLETED)
    if remote.lost.is_set() and not stop.is_set():
        log.error("gateway.front_lost_money_writer", pid=os.getpid())
    stopped.cancel()
    lost.cancel()
    await gateway.stop()
    await remote.close()


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) ``host:port`` with SO_REUSEPORT: port 0 becomes a concrete port
    every front can bind too, and the port stays ours while fronts restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class GatewayProcesses:
    """``serve``'s gateway with ``gateway_processes`` fronts: the money writer and its
    service on an event loop thread here, the fronts as child processes."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.count = settings.gateway_processes
        sqlite = engine.dialect.name == "sqlite"
        self.money = MoneyWriter(engine, settings, SiteNames(engine), threads=not sqlite)
        self.service = MoneyService(self.money, inline=sqlite)
        self.path = private_socket_path()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="tsp-money-link")
        self._context = multiprocessing.get_context("spawn")
        self._fronts: list[tuple[Any, Connection]] = []
        self._reserved: list[socket.socket] = []
        self._front_settings: Settings | None = None
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="tsp-fronts", daemon=True)
        self.tls = settings.gateway_tls_cert is not None

    def start(self) -> Bound:
        s = self.settings
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.service.start(self.path), self.loop).result(10)
        self._reserved = [
            reserve_port(s.gateway_host, s.gateway_business_port),
            reserve_port(s.gateway_host, s.gateway_management_port),
        ]
        business, management = (sock.getsockname()[1] for sock in self._reserved)
        self._front_settings = s.model_copy(
            update={
                "gateway_business_port": business,
                "gateway_management_port": management,
                "gateway_reuse_port": True,
            }
        )
        self._fronts = [self._spawn() for _ in range(self.count)]
        try:
            self._await_ready(time.monotonic() + READY_TIMEOUT_S)
        except RuntimeError:
            self.stop()
            raise
        self._supervisor.start()
        log.info(
            "gateway.processes_listening",
            host=s.gateway_host,
            business_port=business,
            management_port=management,
            fronts=self.count,
        )
        return Bound(s.gateway_host, business, management)

    def _await_ready(self, deadline: float) -> None:
        """Until every front has reported that it listens. A front that dies first (a
        failed start, a kill) is started again, until the deadline."""
        waiting = set(range(self.count))
        while waiting:
            for index in sorted(waiting):
                process, ready = self._fronts[index]
                with contextlib.suppress(EOFError, OSError):
                    if ready.poll(0.05):
                        ready.recv()
                        waiting.discard(index)
                        continue
                if not process.is_alive():
                    log.warning("gateway.front_failed_to_start", exitcode=process.exitcode)
                    ready.close()
                    self._fronts[index] = self._spawn()
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} gateway front process(es) did not start")

    def _spawn(self) -> tuple[Any, Connection]:
        assert self._front_settings is not None
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=front_main,
            args=(self._front_settings, self.path, send),
            name="teleserve-gateway-front",
            daemon=True,
        )
        process.start()
        send.close()
        return process, receive

    def _supervise(self) -> None:
        dead_since: dict[int, float] = {}  # pid -> when first seen dead (clean exits)
        while not self._stopping.wait(SUPERVISE_EVERY_S):
            for index, (process, ready) in enumerate(self._fronts):
                if process.is_alive() or self._stopping.is_set():
                    continue
                if process.exitcode == 0:
                    first = dead_since.setdefault(process.pid, time.monotonic())
                    if time.monotonic() - first < CLEAN_EXIT_GRACE_S:
                        continue
                log.warning("gateway.front_restarted", pid=process.pid, exitcode=process.exitcode)
                dead_since.pop(process.pid, None)
                ready.close()
                self._fronts[index] = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        for process, _ in self._fronts:
            if process.is_alive():
                process.terminate()  # SIGTERM: the front closes its servers and connections
        for process, _ in self._fronts:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.service.stop(), self.loop).result(10)
            self.money.stop()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        for sock in self._reserved:
            sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
            self.path.parent.rmdir()
