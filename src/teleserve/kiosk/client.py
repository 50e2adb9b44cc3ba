"""The TSP/1 client: the terminal side of ``../shared/PROTOCOL.md``.

- ``BusinessChannel``: the long connection. SIGN_ON with a fresh client nonce, the
  session key from ``mac.derive_session_key``, one request at a time (no pipelining),
  KEEPALIVE while idle, a new SIGN_ON after ``10002`` / ``10007``, reconnection with
  exponential backoff and jitter (``run``).
- ``ManagementChannel``: one request, one answer, on a connection of its own.

Both verify every answer's MAC. An all-zero MAC is accepted only on the replies the
server must not authenticate (``10001``, ``10002``, ``10007``, ``10008``) and is then an
*unauthenticated hint* (``Answer.authenticated`` false): it makes the client sign on
again, or report the terminal refused, never stand as a business answer. Any other frame
whose MAC does not check out ends the connection (``TransportError``): the stream can no
longer be trusted.

Waits use ``asyncio.timeout``, never ``wait_for``: on Python 3.11 ``wait_for`` can
swallow a cancellation that races its timeout, leaving a task that will not stop.

Serials come from a ``SerialSource`` (the journal): each is committed before the request
is built, and a request is resent only with its own serial.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from teleserve.core.logging import get_logger
from teleserve.gateway.body import encode_body, parse_body
from teleserve.gateway.catalog import KEEPALIVE, SIGN_OFF, SIGN_ON
from teleserve.gateway.errors import (
    BAD_MAC,
    CLOCK_SKEW,
    MALFORMED,
    NO_SESSION,
    UNKNOWN_TERMINAL,
    ZERO_MAC_CODES,
)
from teleserve.gateway.frame import (
    REQUEST,
    SUCCESS,
    ZERO_MAC,
    ZERO_SESSION,
    BadLength,
    Echo,
    Frame,
    Header,
    Malformed,
)
from teleserve.gateway.mac import compute_mac, derive_session_key, parse_nonce
from teleserve.gateway.multiframe import AssemblyViolation, MessageAssembler
from teleserve.gateway.reply import signed_frame
from teleserve.gateway.stream import FrameDecoder
from teleserve.kiosk.config import KioskConfig

log = get_logger("teleserve.kiosk.client")

READ_SIZE = 64 * 1024
EMPTY_BODY = b"{}"
# Resends of one request inside one exchange (re-sign-on, clock correction).
MAX_RETRIES = 3


class TransportError(Exception):
    """The connection failed, timed out or sent something that cannot be trusted."""


class NotConnected(TransportError):
    """No business session right now: the request was not sent."""


class TerminalRefused(Exception):
    """``10008``: unknown or decommissioned terminal (an unauthenticated hint: the agent
    shows the out-of-service screen and keeps trying to sign on, slowly)."""


class ProtocolFault(Exception):
    """``10001``: the server found our frame malformed (our software is wrong)."""


class SerialSource(Protocol):
    """Where serials come from (the journal): committed before use, never reused."""

    @property
    def last_serial(self) -> int: ...

    def next_serial(self) -> int: ...

    def move_past(self, server_last_serial: int) -> bool: ...


class TspClock:
    """The header clock: local time corrected by the server's (SIGN_ON's
    ``server_time_ms``, a ``10006``'s ``details.server_time_ms``), so requests stay
    inside the server's 300 s window even when the kiosk PC's clock drifts."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def sync(self, server_time_ms: object) -> None:
        if isinstance(server_time_ms, int) and not isinstance(server_time_ms, bool):
            self.offset_ms = server_time_ms - int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Answer:
    serial: int
    serv_type: int
    err_number: str
    body: dict[str, Any]
    # False: an all-zero-MAC hint, never a business answer.
    authenticated: bool = True

    @property
    def ok(self) -> bool:
        return self.err_number == SUCCESS

    @property
    def error(self) -> dict[str, Any]:
        error = self.body.get("error")
        return error if isinstance(error, dict) else {}

    @property
    def details(self) -> dict[str, Any]:
        details = self.error.get("details")
        return details if isinstance(details, dict) else {}


@dataclass
class Backoff:
    """Exponential backoff with jitter: ``base · 2^n`` capped at ``cap``, then a random
    point in its upper half (so a fleet coming back after an outage does not reconnect
    in lock-step, and no delay collapses to zero)."""

    base: float
    cap: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        ceiling: float = min(self.cap, self.base * 2.0**self.attempt)
        self.attempt = min(self.attempt + 1, 32)
        return ceiling / 2 + self.rng.uniform(0, ceiling / 2)

    def slow(self) -> float:
        """After ``10008``: keep retrying, at the slowest pace."""
        self.attempt = 32
        return self.next()

    def reset(self) -> None:
        self.attempt = 0


def request_frame(
    terminal_id: str,
    serial: int,
    serv_type: int,
    body: bytes,
    *,
    key: bytes,
    session_id: str,
    timestamp_ms: int,
) -> bytes:
    header = Header(
        terminal_id, serial, serv_type, REQUEST, True, SUCCESS, timestamp_ms, session_id
    )
    return signed_frame(header, body, key)


class _Link:
    """One TCP (or TLS) connection and its frame decoder."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()

    @classmethod
    async def open(cls, config: KioskConfig, port: int) -> _Link:
        host = config.endpoint.host
        try:
            async with asyncio.timeout(config.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=config.tls,
                    server_hostname=host if config.tls is not None else None,
                )
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc
        return cls(reader, writer)

    async def send(self, raw: bytes) -> None:
        try:
            self.writer.write(raw)
            await self.writer.drain()
        except (OSError, ConnectionError) as exc:
            raise TransportError(f"send failed: {exc}") from exc

    async def frame(self, deadline: float) -> Frame:
        while True:
            item = self.decoder.next()
            if isinstance(item, Frame):
                return item
            if isinstance(item, BadLength | Malformed):
                raise TransportError(f"undecodable frame from the server: {item}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransportError("no answer in time")
            try:
                async with asyncio.timeout(remaining):
                    data = await self.reader.read(READ_SIZE)
            except TimeoutError as exc:
                raise TransportError("no answer in time") from exc
            except (OSError, ConnectionError) as exc:
                raise TransportError(f"receive failed: {exc}") from exc
            if not data:
                raise TransportError("the server closed the connection")
            self.decoder.feed(data)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.writer.wait_closed()


async def _receive(link: _Link, echo: Echo, key: bytes, timeout_s: float) -> Answer:
    """The (possibly multi-frame) answer to ``echo``, every frame's MAC verified."""
    assert echo.serial is not None and echo.serv_type is not None
    deadline = time.monotonic() + timeout_s
    assembler = MessageAssembler(echo)
    while True:
        frame = await link.frame(deadline)
        h = frame.header
        if h.err_number in ZERO_MAC_CODES and frame.mac == ZERO_MAC:
            parsed = parse_body(frame.body)
            body = parsed if isinstance(parsed, dict) else {}
            return Answer(echo.serial, echo.serv_type, h.err_number, body, authenticated=False)
        if not hmac.compare_digest(compute_mac(key, frame.signed), frame.mac):
            raise TransportError("an answer failed its MAC check")
        parsed = parse_body(frame.body)
        if not isinstance(parsed, dict):
            raise TransportError(f"an answer's body is not a TSP/1 body: {parsed.reason}")
        result = assembler.add(frame, parsed)
        if isinstance(result, AssemblyViolation):
            raise TransportError(f"an answer does not match its request: {result.reason}")
        if result is not None:
            return Answer(echo.serial, echo.serv_type, h.err_number, result)


@dataclass(frozen=True, slots=True)
class SignedOn:
    session_id: str
    keepalive_s: int
    server_last_serial: int


class BusinessChannel:
    """The business channel's long connection (port 7070)."""

    def __init__(
        self, config: KioskConfig, serials: SerialSource, clock: TspClock | None = None
    ) -> None:
        self.config = config
        self.serials = serials
        self.clock = clock or TspClock()
        self.backoff = Backoff(config.backoff_base_s, config.backoff_max_s)
        self.refused = False  # the last sign-on got 10008
        self._link: _Link | None = None
        self._session_id = ZERO_SESSION
        self._key = b""
        self.keepalive_s = 30
        self._lock = asyncio.Lock()
        self._up = asyncio.Event()
        self._down = asyncio.Event()
        self._down.set()
        self._last_io = time.monotonic()

    @property
    def connected(self) -> bool:
        return self._link is not None

    async def wait_connected(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._up.wait()
        return self.connected

    # -- connect and sign on ---------------------------------------------------------
    async def connect(self) -> SignedOn:
        async with self._lock:
            await self._drop()
            self._link = await _Link.open(self.config, self.config.endpoint.business_port)
            try:
                signed = await self._sign_on()
            except BaseException:
                await self._drop()
                raise
            self._up.set()
            self._down.clear()
            return signed

    async def _sign_on(self) -> SignedOn:
        """SIGN_ON on the current link (lock held). Raises on any refusal."""
        link = self._link
        if link is None:
            raise NotConnected("no connection")
        for _ in range(MAX_RETRIES):
            nonce = secrets.token_bytes(16)
            serial = self.serials.next_serial()
            body = encode_body(
                {
                    "client_nonce": nonce.hex(),
                    "software_version": self.config.software_version,
                    "last_serial": serial - 1,
                    "device_mode": self.config.device_mode,
                }
            )
            answer = await self._exchange(
                link, serial, SIGN_ON, body, self.config.master_key, ZERO_SESSION
            )
            if not answer.authenticated:
                self._hint(answer)
                raise TransportError(f"sign-on answered {answer.err_number}")
            if answer.err_number == CLOCK_SKEW:
                self.clock.sync(answer.details.get("server_time_ms"))
                continue
            if not answer.ok:
                raise TransportError(f"sign-on refused: {answer.err_number}")
            return self._session(answer.body, nonce)
        raise TransportError("sign-on kept failing the time window")

    def _session(self, body: dict[str, Any], client_nonce: bytes) -> SignedOn:
        server_nonce = parse_nonce(body.get("server_nonce"))
        session_id = body.get("session_id")
        keepalive = body.get("keepalive_s")
        last = body.get("last_serial")
        if (
            server_nonce is None
            or not isinstance(session_id, str)
            or len(session_id) != 8
            or not isinstance(keepalive, int)
            or keepalive < 1
            or not isinstance(last, int)
        ):
            raise TransportError("a SIGN_ON answer without its fields")
        self._key = derive_session_key(self.config.master_key, client_nonce, server_nonce)
        self._session_id = session_id
        self.keepalive_s = keepalive
        self.refused = False
        self.clock.sync(body.get("server_time_ms"))
        if self.serials.move_past(last):
            log.warning("kiosk.serial_moved_past_server", server_last_serial=last)
        log.info("kiosk.signed_on", session_id=session_id, keepalive_s=keepalive)
        return SignedOn(session_id, keepalive, last)

    def _hint(self, answer: Answer) -> None:
        """Act on an unauthenticated hint that ends the exchange."""
        if answer.err_number == UNKNOWN_TERMINAL:
            self.refused = True
            raise TerminalRefused(UNKNOWN_TERMINAL)
        if answer.err_number == MALFORMED:
            raise ProtocolFault(str(answer.error.get("details")))

    async def _exchange(
        self, link: _Link, serial: int, serv_type: int, body: bytes, key: bytes, session_id: str
    ) -> Answer:
        raw = request_frame(
            self.config.terminal_id,
            serial,
            serv_type,
            body,
            key=key,
            session_id=session_id,
            timestamp_ms=self.clock.now_ms(),
        )
        await link.send(raw)
        answer = await _receive(
            link,
            Echo(self.config.terminal_id, serial, serv_type),
            key,
            self.config.answer_timeout_s,
        )
        self._last_io = time.monotonic()
        return answer

    # -- requests --------------------------------------------------------------------
    async def request(self, serv_type: int, body: bytes, *, serial: int | None = None) -> Answer:
        """Send one request and return its answer (errors included). ``serial``: a
        journaled request's own serial; otherwise a fresh one. ``10002`` / ``10007``
        sign on again and resend the same serial and bytes; ``10006`` corrects the clock
        and resends. Raises ``NotConnected`` / ``TransportError`` when the answer did not
        come (the connection is then dropped: a late answer would be misread)."""
        async with self._lock:
            if self._link is None:
                raise NotConnected("not signed on")
            if serial is None:
                serial = self.serials.next_serial()
            answer: Answer | None = None
            try:
                for _ in range(MAX_RETRIES):
                    link = self._link
                    if link is None:
                        raise NotConnected("not signed on")
                    answer = await self._exchange(
                        link, serial, serv_type, body, self._key, self._session_id
                    )
                    if not answer.authenticated:
                        self._hint(answer)
                        if answer.err_number in (BAD_MAC, NO_SESSION):
                            await self._sign_on()
                            continue
                        return answer
                    if answer.err_number == CLOCK_SKEW:
                        self.clock.sync(answer.details.get("server_time_ms"))
                        continue
                    return answer
            except (TransportError, TerminalRefused, ProtocolFault):
                await self._drop()
                raise
            assert answer is not None
            return answer

    async def sign_off(self) -> None:
        """SIGN_OFF then close (a clean shutdown); errors only end the connection."""
        with contextlib.suppress(TransportError, TerminalRefused, ProtocolFault):
            await self.request(SIGN_OFF, EMPTY_BODY)
        async with self._lock:
            await self._drop()

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _drop(self) -> None:
        link, self._link = self._link, None
        self._session_id, self._key = ZERO_SESSION, b""
        self._up.clear()
        self._down.set()
        if link is not None:
            await link.close()

    # -- the connection supervisor --------------------------------------------------------
    async def run(self, on_connected: Callable[[], Awaitable[None]] | None = None) -> None:
        """Stay connected for ever: connect and sign on with backoff (slowly after
        ``10008``), KEEPALIVE when idle for ``keepalive_s``, start over when the
        connection is lost. ``on_connected`` runs after each successful sign-on."""
        while True:
            if self._link is None:
                try:
                    await self.connect()
                except TerminalRefused:
                    log.warning("kiosk.terminal_refused")
                    await asyncio.sleep(self.backoff.slow())
                    continue
                except (TransportError, ProtocolFault) as exc:
                    delay = self.backoff.next()
                    log.info("kiosk.connect_failed", error=str(exc), retry_in_s=round(delay, 2))
                    await asyncio.sleep(delay)
                    continue
                self.backoff.reset()
                if on_connected is not None:
                    await on_connected()
            await self._keep_alive()

    async def _keep_alive(self) -> None:
        """Until the connection is lost: a KEEPALIVE whenever it has been idle for
        ``keepalive_s`` (the server closes after 3 × that)."""
        while self._link is not None:
            wait = self.keepalive_s - (time.monotonic() - self._last_io)
            if wait <= 0:
                try:
                    await self.request(KEEPALIVE, EMPTY_BODY)
                except (TransportError, TerminalRefused, ProtocolFault):
                    return
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._down.wait()


class ManagementChannel:
    """The management channel (port 7071): a connection per request, MAC'd with the
    master key both ways."""

    def __init__(self, config: KioskConfig, clock: TspClock) -> None:
        self.config = config
        self.clock = clock

    async def request(self, serial: int, serv_type: int, body: bytes) -> Answer:
        answer: Answer | None = None
        for _ in range(2):
            link = await _Link.open(self.config, self.config.endpoint.management_port)
            try:
                raw = request_frame(
                    self.config.terminal_id,
                    serial,
                    serv_type,
                    body,
                    key=self.config.master_key,
                    session_id=ZERO_SESSION,
                    timestamp_ms=self.clock.now_ms(),
                )
                await link.send(raw)
                answer = await _receive(
                    link,
                    Echo(self.config.terminal_id, serial, serv_type),
                    self.config.master_key,
                    self.config.answer_timeout_s,
                )
            finally:
                await link.close()
            if not answer.authenticated:
                if answer.err_number == UNKNOWN_TERMINAL:
                    raise TerminalRefused(UNKNOWN_TERMINAL)
                if answer.err_number == MALFORMED:
                    raise ProtocolFault(str(answer.error.get("details")))
            if answer.authenticated and answer.err_number == CLOCK_SKEW:
                self.clock.sync(answer.details.get("server_time_ms"))
                continue
            return answer
        assert answer is not None
        return answer
