"""From a decoded request to the frames that answer it: the order of checks, the
business channel's sign-on / keepalive / sign-off, the serial record rule, the
throttles, and the hand-over to the plain handlers (``gateway.handlers``) or the money
writer (``gateway.money``).

Everything here runs on the event loop; the database is reached only through
``asyncio.to_thread`` (a terminal lookup that misses the cache, SIGN_ON's
``last_serial``, the serial record step and the handlers) or the money writer's
threads, so a slow query holds one connection's task, never the loop.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.clock import utcnow
from teleserve.core.logging import get_logger
from teleserve.core.settings import Settings
from teleserve.core.throttle import Rate, Throttle
from teleserve.core.uow import UnitOfWork
from teleserve.gateway import errors
from teleserve.gateway.body import encode_body
from teleserve.gateway.catalog import (
    CARD_PAYMENT,
    CASH_PAYMENT,
    KEEPALIVE,
    REVERSAL,
    SERV_TYPES,
    SIGN_OFF,
    SIGN_ON,
    Channel,
)
from teleserve.gateway.checks import (
    Accepted,
    CloseSilently,
    Refusal,
    SessionView,
    check_fields,
    check_in_service,
    check_request,
)
from teleserve.gateway.directory import TerminalDirectory, TerminalEntry
from teleserve.gateway.errors import TspError
from teleserve.gateway.frame import (
    MAX_BODY,
    RESPONSE,
    BadLength,
    Frame,
    Header,
    Malformed,
    Truncated,
)
from teleserve.gateway.mac import derive_session_key, new_server_nonce, parse_nonce
from teleserve.gateway.money import Answer, Outcome
from teleserve.gateway.multiframe import answer_frames
from teleserve.gateway.reply import answer, signed_frame
from teleserve.gateway.sessions import SESSION_LIFETIME_MS, Holder, SessionTable
from teleserve.terminals import alarms, serials
from teleserve.terminals.models import RecordKind

log = get_logger("teleserve.gateway")

# PROTOCOL.md: a resend racing its original waits this long for the original's answer.
IN_PROGRESS_WAIT_S = 10.0
SIGN_ON_ONLY = frozenset({SIGN_ON, SIGN_OFF, KEEPALIVE})
# Served by the money writer's group commit (gateway.money), not by a plain handler.
_WRITER_SERVED = frozenset({CASH_PAYMENT, CARD_PAYMENT})
# Paying and what follows it: never throttled per terminal.
_PAYING = frozenset({CASH_PAYMENT, CARD_PAYMENT, REVERSAL, 2010, 2012})

Item = Frame | Malformed | BadLength | Truncated


@dataclass(frozen=True, slots=True)
class Result:
    """What a handler answers: ``00000`` with a body, or a business error (``2xxxx`` /
    ``3xxxx``) with the error body. A handler may also raise ``TspError``."""

    body: Mapping[str, Any]
    err_number: str = "00000"


# A handler runs in a worker thread inside the request's unit of work (and savepoint);
# it never commits: the dispatcher does, once the answer's serial record is in.
Handler = Callable[[UnitOfWork, Accepted], Result]


def read_only(handler: Handler) -> Handler:
    """Mark a handler that never writes: it runs in a read-only unit of work, which on
    SQLite begins with a plain BEGIN and so never queues for the writer's lock behind
    the money writer's batches."""
    handler.read_only = True  # type: ignore[attr-defined]
    return handler


def _is_read_only(handler: Handler) -> bool:
    return bool(getattr(handler, "read_only", False))


class MoneyDesk(Protocol):
    """Where 2001 / 2002 go: the money writer of this process (``money.MoneyWriter``)
    or a front process's link to it (``processes.RemoteMoneyWriter``)."""

    async def submit(self, accepted: Accepted, entry: TerminalEntry) -> Outcome: ...


@dataclass(frozen=True, slots=True)
class Reply:
    frames: list[bytes]
    close: bool = False


def now_ms() -> int:
    return int(utcnow().timestamp() * 1000)


class _LostRace(Exception):
    """The serial was recorded by a concurrent transaction while this one processed it."""

    def __init__(self, record: serials.SerialRecord) -> None:
        super().__init__(record.key)
        self.record = record


class Dispatcher:
    """One per gateway process: the session table, the terminal directory, the handlers
    and the in-flight state-changing requests."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        handlers: Mapping[int, Handler] | None = None,
        directory: TerminalDirectory | None = None,
        money: MoneyDesk | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.directory = directory or TerminalDirectory(engine, settings.gateway_terminal_cache_s)
        self.sessions = SessionTable()
        self.handlers = dict(handlers or {})
        self.money = money
        for code in self.handlers:
            # 2001 / 2002 belong to the money writer when there is one; without it (tests
            # of other parts, e.g. the kiosk agent's) a plain handler may stand in.
            taken = code in _WRITER_SERVED and money is not None
            if code not in SERV_TYPES or code in SIGN_ON_ONLY or taken:
                raise ValueError(f"no handler can be installed for serv_type {code}")
        self.served: dict[Channel, frozenset[int]] = {
            channel: frozenset(
                code for code in self.handlers if SERV_TYPES[code].channel is channel
            )
            for channel in Channel
        }
        self.served[Channel.BUSINESS] |= SIGN_ON_ONLY
        if money is not None:
            self.served[Channel.BUSINESS] |= _WRITER_SERVED
        self._inflight: dict[tuple[str, int], asyncio.Event] = {}
        self.in_progress_wait_s = IN_PROGRESS_WAIT_S
        # MAC failures per sending address (PROTOCOL.md: throttle the address, never
        # lock the terminal: anyone can send a bad MAC).
        self._mac_failures = Throttle("memory://")
        self._mac_rate = Rate(settings.gateway_mac_failures_per_minute, 60)
        self._mac_alarmed: dict[str, float] = {}  # address -> when its last alarm went up
        # Connections per address, requests per terminal (docs/gateway.md "Throttles").
        self._limits = Throttle("memory://")
        self._connection_rate = Rate(
            max(settings.gateway_connections_per_address_per_minute, 1), 60
        )
        self._terminal_rate = Rate(max(settings.gateway_requests_per_terminal_per_minute, 1), 60)
        self._background: set[asyncio.Task[None]] = set()
        # Called with (terminal_id, session_id) after each SIGN_ON: a front process tells
        # the others (gateway.processes), which close that terminal's older connection.
        self.on_sign_on: Callable[[str, str], None] | None = None

    def session_elsewhere(self, terminal_id: str, session_id: str) -> None:
        """The terminal signed on in another process: its session here, if any, ends and
        its connection closes (PROTOCOL.md: a new SIGN_ON ends the older session)."""
        holder = self.sessions.holder_of(terminal_id)
        if holder is None or holder.session is None or holder.session.session_id == session_id:
            return
        self.sessions.end(holder)
        holder.close()

    # -- admission -----------------------------------------------------------------
    def address_blocked(self, host: str) -> bool:
        """Too many MAC failures from ``host`` in the last minute, or too many new
        connections: its connections are closed unanswered until the window moves on.
        Counts the connection being admitted."""
        if not self._mac_failures.test(f"mac:{host}", self._mac_rate):
            return True
        if self.settings.gateway_connections_per_address_per_minute == 0:
            return False
        if self._limits.hit(f"conn:{host}", self._connection_rate):
            return False
        log.warning("gateway.connections_throttled", peer=host)
        return True

    def _terminal_throttled(self, accepted: Accepted) -> Refusal | None:
        """``20012`` with ``retry_after_s`` for a terminal asking too often. Only requests
        that are not recorded and not part of paying: a payment, its reversal, receipt
        or status is never turned away, and a recorded (state-changing) request must not
        get a recorded refusal for what is only a passing rate."""
        if self.settings.gateway_requests_per_terminal_per_minute == 0:
            return None
        if accepted.serv_type.state_changing or accepted.serv_type.code in _PAYING:
            return None
        key = f"term:{accepted.frame.header.terminal_id}"
        if self._limits.hit(key, self._terminal_rate):
            return None
        wait = self._limits.retry_after(key, self._terminal_rate)
        return accepted.refuse(errors.TOO_MANY_REQUESTS, {"retry_after_s": wait})

    def _count_mac_failure(self, host: str, terminal_id: str | None) -> None:
        key = f"mac:{host}"
        if self._mac_failures.hit(key, self._mac_rate) and self._mac_failures.test(
            key, self._mac_rate
        ):
            return  # still under the limit
        # This failure used up the address's allowance: from now on it is dropped.
        log.warning("gateway.mac_failures_throttled", peer=host, terminal_id=terminal_id)
        # One alarm per address per minute at most: a flood must not become a flood of
        # writes. It names the terminal the frames claimed to come from (kept as given
        # when unknown, visible operator-wide).
        now = time.monotonic()
        if terminal_id and now - self._mac_alarmed.get(host, -60.0) >= 60.0:
            self._mac_alarmed[host] = now
            self._spawn_alarm(
                terminal_id,
                "mac_failures",
                "major",
                f"too many MAC failures from {host}: its frames are dropped for a while",
            )

    def _spawn_alarm(self, terminal_id: str, code: str, severity: str, message: str) -> None:
        """Raise a gateway alarm in a worker thread, without waiting for it."""
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self._raise_alarm, terminal_id, code, severity, message)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _raise_alarm(self, terminal_id: str, code: str, severity: str, message: str) -> None:
        try:
            with self.engine.begin() as conn:
                alarms.raise_alarm(conn, terminal_id, code, severity, "gateway", message, utcnow())
        except Exception:  # the request goes on; the log keeps what the alarm would say
            log.exception("gateway.alarm_failed", terminal_id=terminal_id, alarm_code=code)

    # -- the checks ----------------------------------------------------------------
    async def _check(
        self, item: Item, channel: Channel, session: SessionView | None, peer: str
    ) -> tuple[Accepted | Refusal | CloseSilently, TerminalEntry | None, int]:
        entry: TerminalEntry | None = None
        if isinstance(item, Frame):
            terminal_id = item.header.terminal_id
            # A cached terminal costs no thread hop; a miss reads the registry in a thread.
            hit, entry = self.directory.cached(terminal_id)
            if not hit:
                entry = await asyncio.to_thread(self.directory.get, terminal_id)
        found = entry

        def lookup(terminal_id: str) -> Any:
            return found.view if found is not None else None

        stamp = now_ms()
        outcome = check_request(
            item,
            channel=channel,
            lookup=lookup,
            session=session,
            now_ms=stamp,
            served=self.served[channel],
        )
        if isinstance(outcome, Refusal) and outcome.code == errors.BAD_MAC:
            self._count_mac_failure(peer, outcome.echo.terminal_id)
        return outcome, entry, stamp

    def _sim_refused(self, accepted: Accepted) -> Refusal | None:
        """PROTOCOL.md: a terminal reporting ``device_mode`` ``sim`` is refused (10008)
        unless the deployment runs in demo mode (applied at the fields step: the body
        says it)."""
        if accepted.body.get("device_mode") == "sim" and not self.settings.is_demo:
            return accepted.refuse(errors.UNKNOWN_TERMINAL)
        return None

    # -- business channel ------------------------------------------------------------
    async def business(self, item: Item, holder: Holder) -> Reply:
        outcome, entry, stamp = await self._check(
            item, Channel.BUSINESS, holder.session, holder.peer
        )
        if isinstance(outcome, CloseSilently):
            return Reply([], close=True)
        if isinstance(outcome, Refusal):
            return Reply([outcome.reply(stamp)], outcome.closes)
        assert entry is not None
        code = outcome.serv_type.code
        if code in SIGN_ON_ONLY:
            refusal = (
                check_in_service(outcome) or check_fields(outcome) or self._sim_refused(outcome)
            )
            if refusal is not None:
                return Reply([refusal.reply(stamp)], refusal.closes)
            if code == SIGN_ON:
                return await self._sign_on(outcome, holder, stamp)
            if code == SIGN_OFF:
                self.sessions.end(holder)
                return Reply([self._answer(outcome, {}, stamp)], close=True)
            return Reply([self._answer(outcome, {"server_time_ms": stamp}, stamp)])
        return Reply(await self._serve(outcome, entry))

    async def _sign_on(self, accepted: Accepted, holder: Holder, stamp: int) -> Reply:
        h = accepted.frame.header
        client_nonce = parse_nonce(accepted.body["client_nonce"])
        assert client_nonce is not None  # check_fields held it to 32 hex digits
        server_nonce = new_server_nonce()
        recorded = await asyncio.to_thread(self.directory.last_serial, h.terminal_id)
        if accepted.body["last_serial"] < recorded:
            # The terminal lost its counter (PROTOCOL.md: the server raises an alarm).
            log.warning(
                "gateway.terminal_counter_behind",
                terminal_id=h.terminal_id,
                terminal_last_serial=accepted.body["last_serial"],
                server_last_serial=recorded,
            )
            self._spawn_alarm(
                h.terminal_id,
                "counter_behind",
                "major",
                f"the terminal signed on with last_serial {accepted.body['last_serial']}, "
                f"below the server's {recorded}: it lost its serial counter",
            )
        session = SessionView(
            terminal_id=h.terminal_id,
            session_id=self.sessions.new_session_id(),
            key=derive_session_key(accepted.key, client_nonce, server_nonce),
            expires_at_ms=stamp + SESSION_LIFETIME_MS,
        )
        older = self.sessions.sign_on(holder, session)
        if older is not None:
            older.close()
        if self.on_sign_on is not None:
            self.on_sign_on(h.terminal_id, session.session_id)
        body = {
            "session_id": session.session_id,
            "server_nonce": server_nonce.hex(),
            "keepalive_s": self.settings.gateway_keepalive_s,
            "server_time_ms": stamp,
            "last_serial": recorded,
        }
        frame = answer(
            accepted.frame.echo, body, key=accepted.key, session_id=session.session_id, now_ms=stamp
        )
        return Reply([frame])

    # -- management channel ------------------------------------------------------------
    async def management(self, item: Item, peer: str) -> Reply:
        outcome, entry, stamp = await self._check(item, Channel.MANAGEMENT, None, peer)
        if isinstance(outcome, CloseSilently):
            return Reply([], close=True)
        if isinstance(outcome, Refusal):
            return Reply([outcome.reply(stamp)], close=True)
        assert entry is not None
        return Reply(await self._serve(outcome, entry), close=True)

    # -- served serv_types: the serial record, then the handler ----------------------
    def _answer(self, accepted: Accepted, body: Mapping[str, Any], stamp: int) -> bytes:
        return answer(
            accepted.frame.echo,
            body,
            key=accepted.key,
            session_id=accepted.session_id,
            now_ms=stamp,
        )

    async def _serve(self, accepted: Accepted, entry: TerminalEntry) -> list[bytes]:
        code = accepted.serv_type.code
        if not accepted.serv_type.state_changing:
            handler = self.handlers[code]
            return await asyncio.to_thread(self._run, accepted, entry, handler, False)
        h = accepted.frame.header
        if code == REVERSAL:
            # A REVERSAL racing the payment it names waits for that payment's answer, so
            # it finds the payment recorded rather than leaving a marker beside it.
            original = accepted.body.get("original_serial")
            if type(original) is int and not await self._wait_inflight((h.terminal_id, original)):
                return [accepted.refuse(errors.BUSY).reply(now_ms())]
        key = (h.terminal_id, h.serial)
        # A resend racing its original in this process waits for the original's answer
        # (then finds it recorded); across processes the serial insert does the waiting.
        if not await self._wait_inflight(key):
            return [accepted.refuse(errors.BUSY).reply(now_ms())]
        done = asyncio.Event()
        self._inflight[key] = done
        try:
            if code in _WRITER_SERVED and self.money is not None:
                outcome = await self.money.submit(accepted, entry)
                if isinstance(outcome, Answer):
                    return self._frames(accepted, outcome.err_number, outcome.body, now_ms())
                return [outcome.reply(now_ms())]
            handler = self.handlers[code]
            return await asyncio.to_thread(self._run, accepted, entry, handler, True)
        finally:
            del self._inflight[key]
            done.set()

    async def _wait_inflight(self, key: tuple[str, int]) -> bool:
        """Wait until no request holds ``key`` in this process; false after the
        protocol's 10 s (the caller answers ``90002``)."""
        deadline = time.monotonic() + self.in_progress_wait_s
        while (running := self._inflight.get(key)) is not None:
            remaining = deadline - time.monotonic()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    await running.wait()
            except TimeoutError:
                return False
        return True

    def _run(
        self, accepted: Accepted, entry: TerminalEntry, handler: Handler, recorded: bool
    ) -> list[bytes]:
        """Blocking: one unit of work for one request (worker thread)."""
        h = accepted.frame.header
        actor = Actor(ActorKind.terminal, h.terminal_id, entry.org_path, frozenset(), h.terminal_id)
        readonly = not recorded and _is_read_only(handler)
        try:
            with UnitOfWork(self.engine, actor, readonly=readonly) as uow:
                if recorded:
                    frames = self._recorded(uow, accepted, handler)
                else:
                    frames = self._unrecorded(uow, accepted, handler)
                if not readonly:
                    uow.commit()
                return frames
        except TspError as exc:  # a protocol or server error a handler raised: nothing kept
            return [accepted.refuse(exc.code, exc.details).reply(now_ms())]
        except OperationalError as exc:
            if "lock" in str(exc.orig).lower():  # lock_timeout: the original is still busy
                return [accepted.refuse(errors.BUSY).reply(now_ms())]
            log.exception("gateway.request_failed", terminal_id=h.terminal_id)
            return [accepted.refuse(errors.INTERNAL).reply(now_ms())]
        except Exception:
            # Nothing was committed: the unit of work rolled back.
            log.exception("gateway.request_failed", terminal_id=h.terminal_id)
            return [accepted.refuse(errors.INTERNAL).reply(now_ms())]

    def _pre_checks(self, accepted: Accepted) -> Refusal | None:
        return check_in_service(accepted) or check_fields(accepted) or self._sim_refused(accepted)

    def _unrecorded(self, uow: UnitOfWork, accepted: Accepted, handler: Handler) -> list[bytes]:
        refusal = self._pre_checks(accepted) or self._terminal_throttled(accepted)
        if refusal is not None:
            return [refusal.reply(now_ms())]
        result = _handle(handler, uow, accepted)
        return self._frames(accepted, result.err_number, encode_body(result.body), now_ms())

    def _recorded(self, uow: UnitOfWork, accepted: Accepted, handler: Handler) -> list[bytes]:
        h = accepted.frame.header
        conn = uow.connection
        if uow.dialect == "postgresql":
            # A resend racing an uncommitted original waits in the insert; the protocol
            # gives it 10 s before 90002.
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        key = (h.terminal_id, h.serial)
        digest = serials.body_digest(accepted.frame.body)
        found = serials.get_records(conn, [key]).get(key)
        if found is not None:
            return self._from_record(uow, accepted, found, digest)
        refusal = self._pre_checks(accepted)
        if refusal is not None:
            return [refusal.reply(now_ms())]  # 1xxxx: not recorded, nothing changed
        try:
            with uow.savepoint():
                result = _handle(handler, uow, accepted)
                text = encode_body(result.body)
                if serials.recordable(result.err_number):
                    record = serials.SerialRecord(
                        terminal_id=h.terminal_id,
                        serial=h.serial,
                        serv_type=h.serv_type,
                        body_sha256=digest,
                        err_number=result.err_number,
                        answer=text.decode("utf-8"),
                        created_at=utcnow(),
                    )
                    claim = serials.insert_or_get(conn, [record])[0]
                    if not claim.inserted:
                        raise _LostRace(claim.record)
        except _LostRace as lost:
            return self._from_record(uow, accepted, lost.record, digest)
        return self._frames(accepted, result.err_number, text, now_ms())

    def _from_record(
        self,
        uow: UnitOfWork,
        accepted: Accepted,
        record: serials.SerialRecord,
        digest: str,
    ) -> list[bytes]:
        h = accepted.frame.header
        if record.matches(h.serv_type, digest):
            # The recorded answer again: same err_number and body, fresh timestamp and MAC.
            return self._frames(
                accepted, record.err_number, record.answer.encode("utf-8"), now_ms()
            )
        if record.kind is RecordKind.reversal_marker:
            # A REVERSAL named this serial before its payment arrived. Only a payment may
            # consume the marker (the money slice); anything else is another request.
            log.info("gateway.serial_marked", terminal_id=h.terminal_id)
        last = serials.last_serial(uow.connection, h.terminal_id)
        return [accepted.refuse(errors.SERIAL_CONFLICT, {"last_serial": last}).reply(now_ms())]

    def _frames(self, accepted: Accepted, err_number: str, body: bytes, stamp: int) -> list[bytes]:
        """The frames of an answer whose body bytes are given (sent as they are when they
        fit one frame, so a resend repeats the recorded bytes exactly)."""
        h = accepted.frame.header
        if len(body) <= MAX_BODY:
            header = Header(
                terminal_id=h.terminal_id,
                serial=h.serial,
                serv_type=h.serv_type,
                direction=RESPONSE,
                last=True,
                err_number=err_number,
                timestamp_ms=stamp,
                session_id=accepted.session_id,
            )
            return [signed_frame(header, body, accepted.key)]
        return answer_frames(
            accepted.frame.echo,
            json.loads(body),
            key=accepted.key,
            session_id=accepted.session_id,
            now_ms=stamp,
        )


def _handle(handler: Handler, uow: UnitOfWork, accepted: Accepted) -> Result:
    """Run ``handler`` in its own savepoint: a business error it raises (``TspError``
    ``2xxxx`` / ``3xxxx``) drops its changes and becomes the (recordable) answer."""
    try:
        if uow.readonly:  # nothing to drop: no SAVEPOINT / RELEASE round of statements
            return handler(uow, accepted)
        with uow.savepoint():
            return handler(uow, accepted)
    except TspError as exc:
        if not exc.code.startswith(("2", "3")):
            raise
        return Result(exc.body(), exc.code)
