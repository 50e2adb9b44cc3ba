"""The outbox worker: delivery after commit, retries, dead letters, idempotent redelivery,
leases, concurrent workers, operator requeue and periodic timers — on both databases."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from teleserve.core import worker
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.clock import utcnow
from teleserve.core.db import make_engine, read_engine
from teleserve.core.errors import PermissionDenied
from teleserve.core.outbox import OutboxMessage
from teleserve.core.settings import use_settings
from teleserve.core.worker import (
    Message,
    PermanentFailure,
    ProcessedMessage,
    Registry,
    WorkerTimer,
    backoff_seconds,
    requeue_dead,
    run_once,
    run_timers,
)

# -- helpers ------------------------------------------------------------------------------


def _emit(make_uow, topic: str, payload: dict | None = None, count: int = 1) -> None:
    with make_uow() as uow:
        for i in range(count):
            uow.emit(topic, payload or {"n": i})
        uow.commit()


def _messages(engine, topic: str | None = None) -> list:
    query = select(OutboxMessage).order_by(OutboxMessage.created_at, OutboxMessage.id)
    if topic is not None:
        query = query.where(OutboxMessage.topic == topic)
    with read_engine(engine).connect() as conn:
        return list(conn.execute(query))


def _one(engine, topic: str):
    rows = _messages(engine, topic)
    assert len(rows) == 1, rows
    return rows[0]


class Recorder:
    """A handler that records its calls and fails its first ``failures`` of them."""

    def __init__(self, failures: int = 0, exc: Exception | None = None) -> None:
        self.calls: list[Message] = []
        self.failures = failures
        self.exc = exc or RuntimeError("boom")
        self.lock = threading.Lock()

    def __call__(self, uow, message: Message) -> None:
        with self.lock:
            self.calls.append(message)
            failing = len(self.calls) <= self.failures
        # A write of the handler's own, which must commit (or vanish) with the ack.
        uow.emit("handled", {"of": message.id})
        if failing:
            raise self.exc


@pytest.fixture
def tuned(settings):
    """Worker settings small enough to walk through in a test."""
    small = settings.model_copy(
        update={"outbox_max_attempts": 3, "outbox_backoff_seconds": 10.0, "outbox_batch": 50}
    )
    use_settings(small)
    return small


# -- delivery --------------------------------------------------------------------------------


def test_delivers_committed_messages_only(make_uow, engine, tuned):
    reg = Registry()
    handler = Recorder()
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.created", {"id": "T1"})
    with make_uow() as uow:
        uow.emit("thing.created", {"id": "T2"})  # rolled back: never delivered
    stats = run_once(engine, registry=reg)
    assert stats.claimed == 1 and stats.processed == 1
    assert [m.payload for m in handler.calls] == [{"id": "T1"}]
    assert handler.calls[0].attempts == 1
    row = _one(engine, "thing.created")
    assert row.status == "done" and row.done_at is not None and row.locked_until is None
    # The handler's own write committed with the done mark.
    assert len(_messages(engine, "handled")) == 1
    run_once(engine, registry=reg)
    assert len(handler.calls) == 1  # delivered once


def test_failed_handler_rolls_back_its_writes_and_retries_with_backoff(
    make_uow, engine, tuned, frozen_clock
):
    reg = Registry()
    handler = Recorder(failures=2)
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.created")
    start = utcnow()

    stats = run_once(engine, registry=reg)
    assert (stats.retried, stats.processed) == (1, 0)
    row = _one(engine, "thing.created")
    assert row.status == "pending" and row.attempts == 1
    assert row.last_error == "test.recorder: RuntimeError: boom"
    # First retry after base × 2^0 = 10 s, jittered down to no less than half of it.
    assert start + timedelta(seconds=5) <= row.available_at <= start + timedelta(seconds=10)
    assert _messages(engine, "handled") == []  # the failed attempt's write rolled back

    assert run_once(engine, registry=reg).claimed == 0  # not due yet
    frozen_clock.advance(seconds=10)
    assert run_once(engine, registry=reg).retried == 1
    row = _one(engine, "thing.created")
    assert row.attempts == 2
    # Second retry: 20 s nominal.
    assert utcnow() + timedelta(seconds=10) <= row.available_at <= utcnow() + timedelta(seconds=20)

    frozen_clock.advance(seconds=20)
    assert run_once(engine, registry=reg).processed == 1
    row = _one(engine, "thing.created")
    assert row.status == "done" and row.attempts == 3
    assert [m.attempts for m in handler.calls] == [1, 2, 3]
    assert len(_messages(engine, "handled")) == 1


def test_dead_letter_after_max_attempts_runs_the_hook_once(make_uow, engine, tuned, frozen_clock):
    reg = Registry()
    buried: list[tuple[str, str]] = []

    def on_dead(uow, message, reason):
        buried.append((message.id, reason))
        uow.emit("buried", {"of": message.id})  # commits with the dead mark

    reg.register("thing.created", Recorder(failures=99), name="test.recorder", on_dead=on_dead)
    _emit(make_uow, "thing.created")
    outcomes = []
    for _ in range(tuned.outbox_max_attempts):
        stats = run_once(engine, registry=reg)
        outcomes.append((stats.retried, stats.dead))
        frozen_clock.advance(hours=1)
    assert outcomes == [(1, 0), (1, 0), (0, 1)]
    row = _one(engine, "thing.created")
    assert row.status == "dead" and row.attempts == 3
    assert row.last_error == "test.recorder: RuntimeError: boom"
    assert buried == [(row.id, "RuntimeError: boom")]
    assert len(_messages(engine, "buried")) == 1
    frozen_clock.advance(hours=1)
    run_once(engine, registry=reg)
    assert _one(engine, "thing.created").attempts == 3  # never claimed again
    assert [d.id for d in worker.dead_messages(engine)] == [row.id]
    assert worker.outbox_counts(engine)["dead"] == 1


def test_permanent_failure_is_dead_at_once(make_uow, engine, tuned):
    reg = Registry()
    reasons: list[str] = []
    reg.register(
        "thing.created",
        Recorder(failures=1, exc=PermanentFailure("no such mailbox")),
        name="test.recorder",
        on_dead=lambda uow, m, reason: reasons.append(reason),
    )
    _emit(make_uow, "thing.created")
    assert run_once(engine, registry=reg).dead == 1
    row = _one(engine, "thing.created")
    assert (row.status, row.attempts, row.last_error) == (
        "dead",
        1,
        "test.recorder: no such mailbox",
    )
    assert reasons == ["no such mailbox"]


def test_a_broken_dead_hook_still_buries_the_message(make_uow, engine, tuned):
    reg = Registry()

    def broken(uow, message, reason):
        uow.emit("half-written", {})
        raise ValueError("hook bug")

    reg.register(
        "thing.created",
        Recorder(failures=1, exc=PermanentFailure("nope")),
        name="test.recorder",
        on_dead=broken,
    )
    _emit(make_uow, "thing.created")
    assert run_once(engine, registry=reg).dead == 1
    assert _one(engine, "thing.created").status == "dead"
    assert _messages(engine, "half-written") == []


def test_published_events_nobody_handles_are_acknowledged_in_one_transaction(
    make_uow, engine, tuned
):
    """An event declared with ``publishes`` and no handler here is done at once — the
    whole claimed batch in one write transaction (on SQLite one write lock, one fsync),
    while a handled topic in the same batch is still delivered one by one."""
    from sqlalchemy import event

    reg = Registry()
    reg.publishes("thing.announced")
    handler = Recorder()
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.announced", count=20)
    _emit(make_uow, "thing.created", {"id": "T1"})
    commits: list[int] = []
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(engine, "commit", listener)
    try:
        stats = run_once(engine, registry=reg)
    finally:
        event.remove(engine, "commit", listener)
    assert (stats.claimed, stats.processed) == (21, 21)
    assert all(row.status == "done" for row in _messages(engine, "thing.announced"))
    assert len(handler.calls) == 1
    # The claim, the 20 announcements together, the one handled message (run and ack).
    assert len(commits) <= 4


def test_topic_without_handler_is_retried_then_dead(make_uow, engine, tuned, frozen_clock):
    reg = Registry()
    _emit(make_uow, "nobody.listens")
    for _ in range(tuned.outbox_max_attempts):
        run_once(engine, registry=reg)
        frozen_clock.advance(hours=1)
    row = _one(engine, "nobody.listens")
    assert row.status == "dead" and row.attempts == tuned.outbox_max_attempts
    assert row.last_error == "no handler registered for topic 'nobody.listens'"


# -- idempotency and leases -----------------------------------------------------------------


def test_redelivery_skips_handlers_that_already_committed(make_uow, engine, tuned, frozen_clock):
    reg = Registry()
    first, second = Recorder(), Recorder(failures=1)
    reg.register("thing.created", first, name="test.first")
    reg.register("thing.created", second, name="test.second")
    _emit(make_uow, "thing.created")

    assert run_once(engine, registry=reg).retried == 1
    assert (len(first.calls), len(second.calls)) == (1, 1)
    frozen_clock.advance(minutes=5)
    assert run_once(engine, registry=reg).processed == 1
    assert (len(first.calls), len(second.calls)) == (1, 2)  # the first did not run again
    assert _one(engine, "thing.created").status == "done"
    assert len(_messages(engine, "handled")) == 2  # one committed write per handler
    with read_engine(engine).connect() as conn:
        marks = set(conn.execute(select(ProcessedMessage.handler)).scalars())
    assert marks == {"test.first", "test.second"}


def test_a_lost_acknowledgement_does_not_run_the_handler_again(make_uow, engine, tuned):
    reg = Registry()
    handler = Recorder()
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.created")
    assert run_once(engine, registry=reg).processed == 1
    # As if the done mark had been lost after the handler's commit.
    with engine.begin() as conn:
        conn.execute(update(OutboxMessage).values(status="pending", done_at=None))
    assert run_once(engine, registry=reg).processed == 1
    assert len(handler.calls) == 1
    assert _one(engine, "thing.created").status == "done"


def test_a_crashed_workers_lease_expires_and_the_message_is_redelivered(
    make_uow, engine, tuned, frozen_clock
):
    reg = Registry()
    handler = Recorder()
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.created")
    claimed = worker._claim(engine, 10, lease_seconds=60)  # a worker that then dies
    assert len(claimed) == 1
    assert run_once(engine, registry=reg).claimed == 0  # still leased
    frozen_clock.advance(seconds=61)
    assert run_once(engine, registry=reg).processed == 1
    assert [m.attempts for m in handler.calls] == [2]


def test_a_message_whose_last_attempt_never_finished_goes_dead(
    make_uow, engine, tuned, frozen_clock
):
    reg = Registry()
    handler = Recorder()
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.created")
    for _ in range(tuned.outbox_max_attempts):  # every attempt kills its worker
        assert len(worker._claim(engine, 10, lease_seconds=60)) == 1
        frozen_clock.advance(seconds=61)
    assert run_once(engine, registry=reg).dead == 1
    assert handler.calls == []
    row = _one(engine, "thing.created")
    assert row.status == "dead" and "never finished" in row.last_error


def test_two_workers_racing_on_an_expired_lease_commit_once(make_uow, engine, tuned, frozen_clock):
    """Worker A is slow; its lease runs out and worker B delivers the message. When A
    finally finishes, its transaction is refused and rolled back: one committed effect."""
    reg = Registry()
    release = threading.Event()
    a_running = threading.Event()
    calls: list[str] = []

    def slow_then_fast(uow, message):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            a_running.set()
            assert release.wait(10)
        uow.emit("handled", {"by": threading.current_thread().name})

    reg.register("thing.created", slow_then_fast, name="test.slow")
    _emit(make_uow, "thing.created")
    results: dict[str, worker.WorkerStats] = {}
    a = threading.Thread(
        target=lambda: results.__setitem__("A", run_once(engine, registry=reg, lease_seconds=30)),
        name="A",
    )
    a.start()
    assert a_running.wait(10)
    frozen_clock.advance(seconds=31)
    results["B"] = run_once(engine, registry=reg)
    release.set()
    a.join(10)
    assert not a.is_alive()
    assert calls == ["A", "MainThread"]
    assert results["B"].processed == 1
    assert results["A"].skipped == 1 and results["A"].processed == 0
    handled = _messages(engine, "handled")
    assert [r.payload for r in handled] == [{"by": "MainThread"}]
    assert _one(engine, "thing.created").status == "done"


def test_concurrent_workers_never_process_a_message_twice(make_uow, engine, tuned, settings):
    """Two workers, each with its own engine (as two processes would have), drain the
    queue together; every message is handled exactly once and none is lost."""
    total = 120
    reg = Registry()
    seen: Counter[str] = Counter()
    by_worker: Counter[str] = Counter()
    lock = threading.Lock()

    def handle(uow, message):
        with lock:
            seen[message.id] += 1
            by_worker[threading.current_thread().name] += 1
        time.sleep(0.001)  # widen the window for overlaps

    reg.register("bulk", handle, name="test.bulk")
    _emit(make_uow, "bulk", count=total)
    errors: list[BaseException] = []

    def drain() -> None:
        own = make_engine(settings.database_url, pool_size=2)
        try:
            idle = 0
            while idle < 3:
                stats = run_once(own, 7, registry=reg)
                idle = idle + 1 if stats.claimed == 0 else 0
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=drain, name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert len(seen) == total and set(seen.values()) == {1}
    assert sum(by_worker.values()) == total
    if engine.dialect.name == "postgresql":
        assert len(by_worker) == 2, by_worker  # SKIP LOCKED let both make progress
    assert worker.outbox_counts(engine) == {"pending": 0, "done": total, "dead": 0}


# -- operators ------------------------------------------------------------------------------


def test_requeue_dead_gives_a_fresh_set_of_attempts(make_uow, engine, tuned):
    reg = Registry()
    handler = Recorder(failures=1, exc=PermanentFailure("down"))
    reg.register("thing.created", handler, name="test.recorder")
    _emit(make_uow, "thing.created")
    _emit(make_uow, "other")  # pending, not dead: left alone
    run_once(engine, registry=reg)
    dead = _one(engine, "thing.created")
    pending = _one(engine, "other")
    clerk = Actor(ActorKind.staff, "u1", "/HQ/", frozenset({"notify.read"}))
    with pytest.raises(PermissionDenied):
        requeue_dead(engine, [dead.id], actor=clerk)
    admin = Actor(ActorKind.staff, "u2", "/", frozenset({"outbox.admin"}))
    assert requeue_dead(engine, [dead.id, pending.id, "nope"], actor=admin) == 1
    row = _one(engine, "thing.created")
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, "test.recorder: down")
    with read_engine(engine).connect() as conn:
        audited = conn.execute(
            select(AuditRecord.action, AuditRecord.actor_id, AuditRecord.subject_id)
        ).all()
    assert [tuple(a) for a in audited] == [("outbox.requeued", "u2", dead.id)]
    assert run_once(engine, registry=reg).processed == 1
    assert _one(engine, "thing.created").status == "done"


def test_prune_removes_old_done_messages_and_their_marks(make_uow, engine, tuned, frozen_clock):
    reg = Registry()
    reg.register("thing.created", Recorder(), name="test.recorder")
    reg.register("doomed", Recorder(exc=PermanentFailure("x"), failures=1), name="test.doomed")
    _emit(make_uow, "thing.created")
    _emit(make_uow, "doomed")
    run_once(engine, registry=reg)
    frozen_clock.advance(days=8)
    _emit(make_uow, "thing.created", {"fresh": True})
    run_once(engine, registry=reg)
    with engine.begin() as conn:
        assert worker.prune(conn, older_than=timedelta(days=7)) == (1, 1)
    remaining = {(r.topic, r.status) for r in _messages(engine)}
    # Kept: the fresh done message, the dead letter, and every "handled" follow-up
    # message (still pending: nothing handles that topic here).
    assert ("thing.created", "done") in remaining and ("doomed", "dead") in remaining
    assert len(_messages(engine, "thing.created")) == 1
    with read_engine(engine).connect() as conn:
        assert conn.scalar(select(func.count()).select_from(ProcessedMessage)) == 1


# -- backoff and registry -------------------------------------------------------------------


@given(
    attempts=st.integers(min_value=1, max_value=200),
    base=st.floats(min_value=0.1, max_value=60),
    cap=st.floats(min_value=1, max_value=7200),
    seed=st.integers(0, 2**32),
)
def test_backoff_is_exponential_capped_and_jittered_downwards(attempts, base, cap, seed):
    nominal = min(cap, base * 2 ** min(attempts - 1, 60))
    delay = backoff_seconds(attempts, base, cap, random.Random(seed))
    assert nominal / 2 <= delay <= nominal


def test_registry_rejects_a_second_handler_with_the_same_name():
    reg = Registry()

    def a(uow, m): ...

    def b(uow, m): ...

    reg.register("t", a, name="x")
    reg.register("t", a, name="x")  # the same module imported twice: harmless
    with pytest.raises(ValueError, match="already registered"):
        reg.register("t", b, name="x")
    assert [s.name for s in reg.handlers_for("t")] == ["x"]
    assert reg.topics() == ["t"]


def test_the_process_registry_has_the_prune_timer():
    assert "core.outbox.prune" in {t.name for t in worker.registry.timers()}


# -- timers -------------------------------------------------------------------------------


def test_timers_run_when_due_and_failures_wait_for_the_next_interval(
    make_uow, engine, tuned, frozen_clock
):
    reg = Registry()
    ran: list[str] = []

    @reg.every(60, name="test.sweep")
    def sweep(uow):
        ran.append("sweep")
        uow.emit("swept", {})  # commits with the timer's bookkeeping

    @reg.every(300, name="test.broken")
    def broken(uow):
        ran.append("broken")
        raise RuntimeError("sweep bug")

    stats = run_timers(engine, registry=reg)
    assert (stats.timers_run, stats.timers_failed) == (1, 1)
    assert run_timers(engine, registry=reg).timers_run == 0  # nothing due
    frozen_clock.advance(seconds=60)
    assert run_timers(engine, registry=reg).timers_run == 1
    assert ran == ["sweep", "broken", "sweep"]
    assert len(_messages(engine, "swept")) == 2
    frozen_clock.advance(seconds=240)
    stats = run_timers(engine, registry=reg)
    assert (stats.timers_run, stats.timers_failed) == (1, 1)
    with read_engine(engine).connect() as conn:
        rows = {r.name: r for r in conn.execute(select(WorkerTimer))}
    assert rows["test.sweep"].runs == 3 and rows["test.sweep"].failures == 0
    assert rows["test.broken"].failures == 2
    assert rows["test.broken"].last_error == "RuntimeError: sweep bug"
    assert rows["test.broken"].next_run_at == utcnow() + timedelta(seconds=300)


def test_every_refuses_a_non_positive_interval():
    with pytest.raises(ValueError):
        Registry().every(0)


def test_run_forever_delivers_until_stopped(make_uow, engine, tuned):
    reg = Registry()
    handler = Recorder()
    reg.register("thing.created", handler, name="test.recorder")
    ticks: list[int] = []
    reg.every(3600, name="test.tick")(lambda uow: ticks.append(1))
    stop = threading.Event()
    result: list[worker.WorkerStats] = []
    thread = threading.Thread(
        target=lambda: result.append(worker.run_forever(engine, stop, 0.01, registry=reg))
    )
    thread.start()
    try:
        _emit(make_uow, "thing.created", count=3)
        deadline = time.monotonic() + 10
        while len(handler.calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert len(handler.calls) == 3
    assert result[0].processed == 3 and result[0].timers_run == 1
    assert ticks == [1]
