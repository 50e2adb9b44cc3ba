"""The outbox worker: delivers outbox messages to their handlers, and runs periodic timers.

Delivery is at least once. A message is *claimed* in a short transaction (PostgreSQL:
``SELECT ... FOR UPDATE SKIP LOCKED``, so concurrent workers take disjoint rows; SQLite:
writers are serialised anyway) which adds one to ``attempts`` and sets a lease
(``locked_until``): if the worker dies, the lease runs out and another worker claims the
message again. Each handler then runs in a unit of work of its own that the worker
commits; the row ``processed_message(handler, message_id)`` and — after the topic's last
handler — the message's ``done`` mark are written in that same transaction, so a handler's
writes and its acknowledgement commit or vanish together. A redelivered message skips the
handlers that already have a ``processed_message`` row, and two workers racing on one
message (a lease that ran out while the first was still busy) cannot both commit a
handler: the second insert of the same primary key fails and its transaction rolls back.

A failed handler rolls back and the message is retried after an exponential backoff
(``outbox_backoff_seconds`` × 2^(attempts-1), capped, "equal jitter": between half and
all of that). After ``outbox_max_attempts`` attempts — or at once when the handler raises
``PermanentFailure`` — the message is *dead*: it keeps ``last_error`` and waits for an
operator (``dead_messages``, ``requeue_dead``). A handler may register an ``on_dead`` hook
that runs in the transaction that buries the message (notify marks its row ``failed``).

A domain event (declared with ``publishes``) with no subscriber is marked done. Any other
message whose topic has no handler in this process is retried like a failure and then
dead-lettered with "no handler registered for topic ...": the likeliest causes are a
worker running an older release than the producer (a rolling upgrade, which the retries
ride out) or a ``tasks`` module the worker did not import; both deserve to be seen.

Timers (``every(seconds)``) run as ``fn(uow)`` in a committed unit of work of their own;
a ``worker_timer`` row per timer holds the next due time, claimed with ``SKIP LOCKED`` so
that among several workers only one runs each due timer.

Handlers run with no database work done before them: on SQLite a unit of work takes the
single write lock at its first statement, so a handler that calls the outside world (SMTP,
an SMS gateway) should do so before its first write (see ``teleserve.notify.service``).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Self, TypeVar

from prometheus_client import Counter
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    Select,
    String,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from teleserve.core.actor import SYSTEM, Actor
from teleserve.core.clock import utcnow
from teleserve.core.db import Base, read_engine, table_of
from teleserve.core.outbox import OutboxMessage, OutboxStatus
from teleserve.core.settings import Settings, get_settings
from teleserve.core.uow import UnitOfWork

log = logging.getLogger(__name__)

# Defaults for settings the kernel does not define yet (see docs/outbox.md): read with
# ``_setting`` so an operator value wins as soon as the field exists.
DEFAULT_LEASE_SECONDS = 300.0
DEFAULT_BACKOFF_MAX_SECONDS = 900.0
DEFAULT_RETENTION_DAYS = 7
ERROR_MAX_CHARS = 4000

MESSAGES = Counter(
    "teleserve_outbox_messages",
    "Outbox messages handled by this process, by outcome.",
    ["outcome"],
)
TIMER_RUNS = Counter(
    "teleserve_worker_timer_runs",
    "Periodic timer runs by this process, by timer and outcome.",
    ["timer", "outcome"],
)


def _setting(settings: Settings, name: str, default: float) -> float:
    return float(getattr(settings, name, default))


# -- tables ----------------------------------------------------------------------------


class ProcessedMessage(Base):
    """A handler has committed its work for a message: redeliveries skip it."""

    __tablename__ = "processed_message"

    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    processed_at: Mapped[datetime]


class WorkerTimer(Base):
    """When each periodic timer is next due, shared by every worker process."""

    __tablename__ = "worker_timer"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    interval_seconds: Mapped[float] = mapped_column(Float)
    next_run_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


# -- messages, handlers, timers ----------------------------------------------------------


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help: the message goes dead at once."""


@dataclass(frozen=True)
class Message:
    """One delivery of an outbox message, as a handler sees it."""

    id: str
    topic: str
    key: str | None
    payload: dict[str, Any]
    attempts: int  # this delivery's number, counting from 1
    created_at: datetime


Handler = Callable[[UnitOfWork, Message], None]
DeadHook = Callable[[UnitOfWork, Message, str], None]
Job = Callable[[UnitOfWork], None]
H = TypeVar("H", bound=Handler)
J = TypeVar("J", bound=Job)


@dataclass(frozen=True)
class Subscription:
    name: str  # stable: it keys processed_message, so renaming one re-runs old messages
    topic: str
    fn: Handler
    on_dead: DeadHook | None = None


@dataclass(frozen=True)
class Timer:
    name: str
    seconds: float
    fn: Job


def _default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


class Registry:
    """Handlers by topic and periodic timers. The process has one (``registry``); tests
    build their own so they see only what they register."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Subscription]] = {}
        self._events: set[str] = set()
        self._timers: dict[str, Timer] = {}
        self._lock = threading.Lock()

    def register(
        self,
        topic: str,
        fn: Handler,
        *,
        name: str | None = None,
        on_dead: DeadHook | None = None,
    ) -> Subscription:
        """Subscribe ``fn`` to ``topic``; several handlers of one topic run in order."""
        sub = Subscription(name or _default_name(fn), topic, fn, on_dead)
        with self._lock:
            subs = self._handlers.setdefault(topic, [])
            for existing in subs:
                if existing.name == sub.name:
                    if existing.fn is fn and existing.on_dead is on_dead:
                        return existing  # the module was imported again
                    raise ValueError(f"handler {sub.name!r} is already registered for {topic}")
            subs.append(sub)
        return sub

    def handler(
        self, topic: str, *, name: str | None = None, on_dead: DeadHook | None = None
    ) -> Callable[[H], H]:
        """Decorator form of ``register``."""

        def decorate(fn: H) -> H:
            self.register(topic, fn, name=name, on_dead=on_dead)
            return fn

        return decorate

    def publishes(self, *topics: str) -> None:
        """Declare domain events: facts published for whoever subscribes (other domains,
        the relay to other systems). An event with no subscriber in this process is
        simply marked done; a topic that is neither an event nor handled is an error."""
        with self._lock:
            self._events.update(topics)

    def is_event(self, topic: str) -> bool:
        with self._lock:
            return topic in self._events

    def handlers_for(self, topic: str) -> tuple[Subscription, ...]:
        with self._lock:
            return tuple(self._handlers.get(topic, ()))

    def unheard_events(self) -> list[str]:
        """Events with no handler here: marked done without being read."""
        with self._lock:
            return sorted(t for t in self._events if not self._handlers.get(t))

    def topics(self) -> list[str]:
        with self._lock:
            return sorted(t for t, subs in self._handlers.items() if subs)

    def every(self, seconds: float, *, name: str | None = None) -> Callable[[J], J]:
        """Decorator: run ``fn(uow)`` every ``seconds`` (first run: the first time due)."""
        if seconds <= 0:
            raise ValueError("a timer's interval must be positive")

        def decorate(fn: J) -> J:
            timer = Timer(name or _default_name(fn), float(seconds), fn)
            with self._lock:
                existing = self._timers.get(timer.name)
                if existing is not None and existing != timer:
                    raise ValueError(f"timer {timer.name!r} is already registered")
                self._timers[timer.name] = timer
            return fn

        return decorate

    def timers(self) -> tuple[Timer, ...]:
        with self._lock:
            return tuple(self._timers.values())


DEFAULT_REGISTRY = Registry()
registry = DEFAULT_REGISTRY
register = DEFAULT_REGISTRY.register
handler = DEFAULT_REGISTRY.handler
every = DEFAULT_REGISTRY.every
publishes = DEFAULT_REGISTRY.publishes


# -- statistics --------------------------------------------------------------------------


@dataclass
class WorkerStats:
    """What a run did; ``run_forever`` returns the sum of its runs."""

    claimed: int = 0
    processed: int = 0  # delivered to every handler and marked done
    retried: int = 0  # failed, scheduled again
    dead: int = 0  # failed for good
    skipped: int = 0  # another worker owned it (a lease that ran out)
    timers_run: int = 0
    timers_failed: int = 0

    def __iadd__(self, other: WorkerStats) -> Self:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def backoff_seconds(
    attempts: int,
    base: float,
    cap: float,
    rng: random.Random | None = None,
) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: ``base`` × 2^(n-1),
    capped at ``cap``, then "equal jitter" (between half and all of it) so that messages
    failing together do not retry together. Never more than the nominal delay, so a caller
    that waits the nominal delay always finds the message due."""
    exponent = min(max(attempts - 1, 0), 60)
    nominal = min(cap, base * 2.0**exponent)
    return nominal * (0.5 + (rng or random).random() / 2)


# -- claiming ------------------------------------------------------------------------------


def _due(table: Table, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """A message is due: pending, available, and not leased to a live worker."""
    return (
        table.c.status == OutboxStatus.pending,
        table.c.available_at <= now,
        or_(table.c.locked_until.is_(None), table.c.locked_until < now),
    )


def _any_due(engine: Engine, due: Select[Any]) -> bool:
    """A read-only look first: an idle worker must not take SQLite's write lock every
    loop."""
    with read_engine(engine).connect() as conn:
        return conn.execute(due.limit(1)).first() is not None


def _claim(engine: Engine, limit: int, lease_seconds: float) -> list[Message]:
    """Lease up to ``limit`` due messages to this worker (one short transaction)."""
    now = utcnow()
    table = table_of(OutboxMessage)
    is_due = _due(table, now)
    due = select(table.c.id).where(*is_due).order_by(table.c.available_at, table.c.id)
    if not _any_due(engine, due):
        return []
    with engine.begin() as conn:
        # PostgreSQL: rows another worker is claiming are skipped, not waited for.
        # SQLite ignores it: its writing transactions (BEGIN IMMEDIATE) are serialised.
        ids = list(conn.execute(due.limit(limit).with_for_update(skip_locked=True)).scalars())
        if not ids:
            return []
        rows = conn.execute(
            update(table)
            # Due conditions again: belt and braces should a lock ever be missing.
            .where(table.c.id.in_(ids), *is_due)
            .values(
                attempts=table.c.attempts + 1,
                locked_until=now + timedelta(seconds=lease_seconds),
            )
            .returning(
                table.c.id,
                table.c.topic,
                table.c.key,
                table.c.payload,
                table.c.attempts,
                table.c.created_at,
            )
        ).all()
    messages = [
        Message(r.id, r.topic, r.key, dict(r.payload or {}), int(r.attempts), r.created_at)
        for r in rows
    ]
    order = {message_id: n for n, message_id in enumerate(ids)}
    messages.sort(key=lambda m: order[m.id])  # RETURNING order is not guaranteed
    return messages


# Unheard events are acknowledged this many times ``outbox_batch`` at a time.
UNHEARD_BATCH_FACTOR = 10


def _acknowledge_unheard(engine: Engine, reg: Registry, limit: int, max_attempts: int) -> int:
    """Mark done, in one statement, up to ``limit`` due events that nobody here handles
    (published for other systems): no lease, no payload read. On SQLite every write
    transaction takes the one write lock the money path needs, so this does in one short
    transaction what claiming and acknowledging did in two per ``outbox_batch``."""
    topics = reg.unheard_events()
    if not topics:
        return 0
    now = utcnow()
    table = table_of(OutboxMessage)
    due = (
        select(table.c.id)
        .where(*_due(table, now), table.c.topic.in_(topics), table.c.attempts < max_attempts)
        .order_by(table.c.available_at, table.c.id)
        .limit(limit)
    )
    if not _any_due(engine, due):
        return 0
    with engine.begin() as conn:
        done = conn.execute(
            update(table)
            .where(table.c.id.in_(due.with_for_update(skip_locked=True).scalar_subquery()))
            .values(status=OutboxStatus.done, done_at=now, locked_until=None)
        ).rowcount
    return int(done)


# -- delivering ------------------------------------------------------------------------------


def _processed(engine: Engine, message_id: str) -> set[str]:
    """Names of the handlers that already committed ``message_id`` (no write lock taken)."""
    table = table_of(ProcessedMessage)
    with read_engine(engine).connect() as conn:
        return set(
            conn.execute(select(table.c.handler).where(table.c.message_id == message_id)).scalars()
        )


def _mark_done(uow: UnitOfWork, *messages: Message) -> None:
    table = table_of(OutboxMessage)
    uow.connection.execute(
        update(table)
        .where(table.c.id.in_([m.id for m in messages]), table.c.status == OutboxStatus.pending)
        .values(status=OutboxStatus.done, done_at=utcnow(), locked_until=None)
    )


class _AlreadyProcessed(Exception):
    """Another worker committed this handler for this message first."""


def _run_handler(engine: Engine, message: Message, sub: Subscription, last: bool) -> None:
    table = table_of(ProcessedMessage)
    with UnitOfWork(engine, SYSTEM) as uow:
        sub.fn(uow, message)
        uow.flush()  # the handler's own errors surface here, as the handler's
        try:
            # On PostgreSQL a concurrent duplicate waits here for the first to commit, then
            # fails on the primary key, and its whole transaction is rolled back.
            uow.connection.execute(
                table.insert().values(
                    handler=sub.name, message_id=message.id, processed_at=utcnow()
                )
            )
        except IntegrityError as exc:
            raise _AlreadyProcessed(sub.name) from exc
        if last:
            _mark_done(uow, message)
        uow.commit()


def _reason(exc: BaseException) -> str:
    """Why a handler failed, for people: a ``PermanentFailure`` says it in its own words."""
    text = str(exc) if isinstance(exc, PermanentFailure) else f"{type(exc).__name__}: {exc}"
    return text[:ERROR_MAX_CHARS]


def _fail(
    engine: Engine,
    message: Message,
    subs: Sequence[Subscription],
    reason: str,
    *,
    failed: Subscription | None,
    permanent: bool,
    settings: Settings,
    exc: BaseException | None = None,
) -> str:
    """Schedule a retry or bury the message; returns the outcome.

    ``last_error`` names the handler that failed; ``on_dead`` hooks get the bare reason.
    """
    now = utcnow()
    dead = permanent or message.attempts >= settings.outbox_max_attempts
    error = (f"{failed.name}: {reason}" if failed else reason)[:ERROR_MAX_CHARS]
    values: dict[str, Any] = {"locked_until": None, "last_error": error}
    if dead:
        values["status"] = OutboxStatus.dead
    else:
        delay = backoff_seconds(
            message.attempts,
            settings.outbox_backoff_seconds,
            _setting(settings, "outbox_backoff_max_seconds", DEFAULT_BACKOFF_MAX_SECONDS),
        )
        values["available_at"] = now + timedelta(seconds=delay)
    hooks: list[Subscription] = []
    if dead:
        committed = _processed(engine, message.id)
        hooks = [s for s in subs if s.on_dead is not None and s.name not in committed]
    try:
        recorded = _record_failure(engine, message, values, hooks, reason)
    except Exception:
        if not hooks:
            raise
        # Bury the message even if a hook is broken: a dead letter must not depend on the
        # code that failed to handle it.
        log.exception("outbox on_dead hook failed", extra={"message_id": message.id})
        recorded = _record_failure(engine, message, values, [], reason)
    if not recorded:
        return "skipped"
    level, what = (logging.ERROR, "dead") if dead else (logging.WARNING, "will retry")
    # A traceback only for unexpected errors: a PermanentFailure explains itself.
    trace = exc if exc is not None and not isinstance(exc, PermanentFailure) else None
    log.log(
        level,
        "outbox message %s (%s) failed on attempt %d, %s: %s",
        message.id,
        message.topic,
        message.attempts,
        what,
        error,
        exc_info=trace,
        extra={"message_id": message.id, "topic": message.topic},
    )
    return "dead" if dead else "retried"


def _record_failure(
    engine: Engine,
    message: Message,
    values: dict[str, Any],
    hooks: Sequence[Subscription],
    reason: str,
) -> bool:
    table = table_of(OutboxMessage)
    with UnitOfWork(engine, SYSTEM) as uow:
        # Fenced by ``attempts``: if our lease ran out and another worker has claimed the
        # message since, its outcome is that worker's to record, not ours.
        result = uow.connection.execute(
            update(table)
            .where(
                table.c.id == message.id,
                table.c.status == OutboxStatus.pending,
                table.c.attempts == message.attempts,
            )
            .values(**values)
        )
        if result.rowcount != 1:
            return False
        for sub in hooks:
            assert sub.on_dead is not None
            sub.on_dead(uow, message, reason)
        uow.commit()
    return True


def _deliver(engine: Engine, reg: Registry, message: Message, settings: Settings) -> str:
    """Run every handler of ``message`` that has not run yet; returns the outcome."""
    subs = reg.handlers_for(message.topic)
    if message.attempts > settings.outbox_max_attempts:
        # Its last attempt never finished (worker killed, or a handler outlived the
        # lease): counting that as a failure keeps a message that crashes workers from
        # circulating for ever.
        error = (
            f"gave up after {message.attempts - 1} attempts: the last one never finished "
            "(the worker stopped, or a handler ran longer than the lease)"
        )
        return _fail(engine, message, subs, error, failed=None, permanent=True, settings=settings)
    if not subs and reg.is_event(message.topic):
        with UnitOfWork(engine, SYSTEM) as uow:  # published; nobody here subscribes
            _mark_done(uow, message)
            uow.commit()
        return "processed"
    if not subs:
        error = f"no handler registered for topic {message.topic!r}"
        return _fail(engine, message, subs, error, failed=None, permanent=False, settings=settings)
    done = _processed(engine, message.id)
    pending = [s for s in subs if s.name not in done]
    if not pending:
        # Every handler committed but the done mark was lost (e.g. the message was put
        # back to pending): acknowledge without running anything again.
        with UnitOfWork(engine, SYSTEM) as uow:
            _mark_done(uow, message)
            uow.commit()
        return "processed"
    for index, sub in enumerate(pending):
        try:
            _run_handler(engine, message, sub, last=index == len(pending) - 1)
        except _AlreadyProcessed:
            log.info("outbox message handled by another worker", extra={"message_id": message.id})
            return "skipped"
        except Exception as exc:
            return _fail(
                engine,
                message,
                subs,
                _reason(exc),
                failed=sub,
                permanent=isinstance(exc, PermanentFailure),
                settings=settings,
                exc=exc,
            )
    return "processed"


def run_once(
    engine: Engine,
    limit: int | None = None,
    *,
    registry: Registry | None = None,
    lease_seconds: float | None = None,
) -> WorkerStats:
    """Claim up to ``limit`` due messages (default ``outbox_batch``) and deliver them.

    The lease must outlast the whole batch, which is delivered one message after another.
    """
    settings = get_settings()
    reg = registry or DEFAULT_REGISTRY
    lease = lease_seconds or _setting(settings, "outbox_lease_seconds", DEFAULT_LEASE_SECONDS)
    stats = WorkerStats()
    batch = limit or settings.outbox_batch
    acknowledged_unheard = _acknowledge_unheard(
        engine, reg, UNHEARD_BATCH_FACTOR * batch, settings.outbox_max_attempts
    )
    if acknowledged_unheard:
        stats.processed += acknowledged_unheard
        MESSAGES.labels("processed").inc(acknowledged_unheard)
    messages = _claim(engine, batch, lease)
    # Counted as claimed too: a worker that acknowledged a full batch goes on at once.
    stats.claimed = len(messages) + acknowledged_unheard
    # Events published for other systems with no handler here are acknowledged together,
    # in one transaction: one each would be a write transaction — on SQLite a write lock
    # and an fsync — per payment, competing with the money path for the one writer.
    unheard = [
        m
        for m in messages
        if m.attempts <= settings.outbox_max_attempts
        and not reg.handlers_for(m.topic)
        and reg.is_event(m.topic)
    ]
    if unheard:
        with UnitOfWork(engine, SYSTEM) as uow:
            _mark_done(uow, *unheard)
            uow.commit()
        stats.processed += len(unheard)
        MESSAGES.labels("processed").inc(len(unheard))
    acknowledged = {m.id for m in unheard}
    for message in messages:
        if message.id in acknowledged:
            continue
        outcome = _deliver(engine, reg, message, settings)
        setattr(stats, outcome, getattr(stats, outcome) + 1)
        MESSAGES.labels(outcome).inc()
    return stats


# -- timers --------------------------------------------------------------------------------


def _due_timers(engine: Engine, timers: Sequence[Timer]) -> list[Timer]:
    """Timers due now, or never run (read-only: an idle worker takes no write lock)."""
    table = table_of(WorkerTimer)
    now = utcnow()
    with read_engine(engine).connect() as conn:
        rows = conn.execute(
            select(table.c.name, table.c.next_run_at).where(
                table.c.name.in_([t.name for t in timers])
            )
        )
        next_runs = {row.name: row.next_run_at for row in rows}
    return [t for t in timers if t.name not in next_runs or next_runs[t.name] <= now]


def _take_timer(uow: UnitOfWork, timer: Timer, now: datetime) -> bool:
    """Lock the timer's row if it is due and free, creating it on first use."""
    table = table_of(WorkerTimer)
    conn = uow.connection
    due = conn.execute(
        select(table.c.name)
        .where(table.c.name == timer.name, table.c.next_run_at <= now)
        .with_for_update(skip_locked=True)
    ).first()
    if due is None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        created = conn.execute(
            insert(table)
            .values(
                name=timer.name,
                interval_seconds=timer.seconds,
                next_run_at=now,
                runs=0,
                failures=0,
            )
            .on_conflict_do_nothing(index_elements=[table.c.name])
            .returning(table.c.name)
        ).first()
        if created is None:
            return False  # not due, or another worker is running it
    conn.execute(
        update(table)
        .where(table.c.name == timer.name)
        .values(
            next_run_at=now + timedelta(seconds=timer.seconds),
            interval_seconds=timer.seconds,
            last_run_at=now,
            last_error=None,
            runs=table.c.runs + 1,
        )
    )
    return True


def _run_timer(engine: Engine, timer: Timer) -> str | None:
    """Run ``timer`` if it is due and no other worker has it; returns the outcome."""
    now = utcnow()
    try:
        with UnitOfWork(engine, SYSTEM) as uow:
            if not _take_timer(uow, timer, now):
                return None
            timer.fn(uow)
            uow.commit()
        return "ok"
    except Exception as exc:
        log.exception("timer %s failed", timer.name)
        # Not again before the next interval: a broken sweep must not run in a tight loop.
        # (The row may not exist yet: a first run's insert was rolled back with it.)
        table = table_of(WorkerTimer)
        with engine.begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            statement = insert(table).values(
                name=timer.name,
                interval_seconds=timer.seconds,
                next_run_at=now + timedelta(seconds=timer.seconds),
                last_run_at=now,
                last_error=_reason(exc),
                runs=0,
                failures=1,
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=[table.c.name],
                    set_={
                        "next_run_at": statement.excluded.next_run_at,
                        "last_run_at": statement.excluded.last_run_at,
                        "last_error": statement.excluded.last_error,
                        "failures": table.c.failures + 1,
                    },
                )
            )
        return "failed"


def run_timers(engine: Engine, *, registry: Registry | None = None) -> WorkerStats:
    """Run every registered timer that is due (each in its own committed transaction)."""
    reg = registry or DEFAULT_REGISTRY
    stats = WorkerStats()
    timers = reg.timers()
    if not timers:
        return stats
    for timer in _due_timers(engine, timers):
        outcome = _run_timer(engine, timer)
        if outcome is None:
            continue
        TIMER_RUNS.labels(timer.name, outcome).inc()
        if outcome == "ok":
            stats.timers_run += 1
        else:
            stats.timers_failed += 1
    return stats


def run_forever(
    engine: Engine,
    stop_event: threading.Event,
    idle_sleep: float = 1.0,
    *,
    registry: Registry | None = None,
    limit: int | None = None,
) -> WorkerStats:
    """Deliver messages and run timers until ``stop_event`` is set.

    A full batch is followed at once by the next; otherwise the worker waits
    ``idle_sleep`` (woken early by ``stop_event``). Database errors are logged and waited
    out, so a restarting database does not stop the worker.
    """
    batch = limit or get_settings().outbox_batch
    total = WorkerStats()
    while not stop_event.is_set():
        claimed = 0
        try:
            total += run_timers(engine, registry=registry)
            stats = run_once(engine, batch, registry=registry)
            total += stats
            claimed = stats.claimed
        except Exception:
            log.exception("outbox worker loop failed; retrying after %.1f s", idle_sleep)
        if claimed < batch:
            stop_event.wait(idle_sleep)
    return total


# -- operators -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadMessage:
    id: str
    topic: str
    key: str | None
    attempts: int
    last_error: str | None
    created_at: datetime


def dead_messages(
    engine: Engine, *, topic: str | None = None, limit: int = 100
) -> list[DeadMessage]:
    """Dead letters, oldest first, for an operator to inspect and requeue."""
    table = table_of(OutboxMessage)
    query = select(
        table.c.id,
        table.c.topic,
        table.c.key,
        table.c.attempts,
        table.c.last_error,
        table.c.created_at,
    ).where(table.c.status == OutboxStatus.dead)
    if topic is not None:
        query = query.where(table.c.topic == topic)
    query = query.order_by(table.c.created_at, table.c.id).limit(limit)
    with read_engine(engine).connect() as conn:
        return [DeadMessage(*row) for row in conn.execute(query)]


def requeue_dead(engine: Engine, ids: Iterable[str], *, actor: Actor = SYSTEM) -> int:
    """Put dead messages back in the queue with a fresh set of attempts; returns how many.

    Ids that are not dead (unknown, pending, done) are left alone. ``last_error`` is kept
    until the next attempt overwrites it. Needs ``outbox.admin``; audited per message.
    """
    actor.require("outbox.admin")
    wanted = sorted(set(ids))
    if not wanted:
        return 0
    table = table_of(OutboxMessage)
    with UnitOfWork(engine, actor) as uow:
        requeued = list(
            uow.connection.execute(
                update(table)
                .where(table.c.id.in_(wanted), table.c.status == OutboxStatus.dead)
                .values(
                    status=OutboxStatus.pending,
                    attempts=0,
                    available_at=utcnow(),
                    locked_until=None,
                )
                .returning(table.c.id, table.c.topic)
            )
        )
        for row in requeued:
            uow.audit("outbox.requeued", "outbox_message", row.id, {"topic": row.topic})
        uow.commit()
    return len(requeued)


def outbox_counts(engine: Engine) -> dict[str, int]:
    """Messages by status (for dashboards and the metrics endpoint)."""
    table = table_of(OutboxMessage)
    with read_engine(engine).connect() as conn:
        rows = conn.execute(select(table.c.status, func.count()).group_by(table.c.status))
        counts = {str(status): 0 for status in OutboxStatus}
        counts.update({str(status): int(n) for status, n in rows})
    return counts


# -- housekeeping ----------------------------------------------------------------------------


def prune(conn: Connection, *, older_than: timedelta) -> tuple[int, int]:
    """Delete done messages, and the processed marks of finished messages, older than
    ``older_than``; returns (messages, marks) deleted. Dead and pending messages stay."""
    cutoff = utcnow() - older_than
    outbox = table_of(OutboxMessage)
    marks = table_of(ProcessedMessage)
    messages = conn.execute(
        delete(outbox).where(outbox.c.status == OutboxStatus.done, outbox.c.done_at < cutoff)
    ).rowcount
    # Marks of unfinished messages stay: a requeued dead letter must still skip the
    # handlers that committed before it died.
    unfinished = select(outbox.c.id).where(outbox.c.status != OutboxStatus.done)
    processed = conn.execute(
        delete(marks).where(marks.c.processed_at < cutoff, marks.c.message_id.not_in(unfinished))
    ).rowcount
    return int(messages), int(processed)


@DEFAULT_REGISTRY.every(3600, name="core.outbox.prune")
def _prune_timer(uow: UnitOfWork) -> None:
    days = _setting(get_settings(), "outbox_retention_days", DEFAULT_RETENTION_DAYS)
    messages, marks = prune(uow.connection, older_than=timedelta(days=days))
    if messages or marks:
        log.info("pruned %d done outbox messages and %d processed marks", messages, marks)
