"""CASH_PAYMENT (2001) and CARD_PAYMENT (2002): the money hot path, with group commit.

PROTOCOL.md, "Money requests are always recorded": an authentic, well-formed payment is
always recorded and answered ``00000`` — ``completed`` (credited), or ``held`` with a
reason (``number_not_payable``, ``amount_mismatch``, ``unknown_denomination``,
``over_limit``, ``reversed_original``). Never refused for business reasons: the cash is
already in the box, the card already charged.

Group commit (DESIGN.md section 4)
    Requests are queued to writer threads. A writer takes everything queued (up to
    ``settings.gateway_money_batch``) and records it in ONE transaction: one serial-record
    lookup, one number lookup, one ``payments.record_payments`` batch, one deposits
    insert, one serial-record insert — then one commit (one fsync) for the whole batch,
    and only then are the answers released. While a batch commits the next one
    gathers, so batches grow with the load by themselves: no timer, no added latency
    when idle. SQLite has one writer thread (it has one writer anyway); PostgreSQL has
    ``settings.gateway_money_writers``, each batching on its own connection.

Failure
    A batch that fails as a whole (a bug, a lost connection) is retried one request at a
    time, so one bad request cannot take the others down; a request that still fails is
    answered ``90001`` with nothing recorded (the terminal resends the same bytes).
    On PostgreSQL a concurrent writer may record the same serial first (a resend on
    another gateway process): the insert finds it, the batch rolls back and runs again,
    and that request is then answered from the record.

Crash: nothing is answered before its commit, so a payment the terminal saw answered is
durable, and one it did not is either durable (the resend gets the recorded answer) or
absent (the resend records it): exactly once either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.clock import business_date, utcnow
from teleserve.core.logging import get_logger
from teleserve.core.settings import Settings
from teleserve.core.uow import UnitOfWork
from teleserve.gateway import errors
from teleserve.gateway.body import encode_body
from teleserve.gateway.catalog import CASH_PAYMENT
from teleserve.gateway.checks import Accepted, Refusal, check_fields, check_in_service
from teleserve.gateway.directory import TerminalEntry
from teleserve.gateway.frame import SUCCESS
from teleserve.gateway.money_state import tsp_status
from teleserve.gateway.receipts import ReceiptFacts, SiteNames, receipt_lines
from teleserve.inventory import service as inventory
from teleserve.payments import service as payments
from teleserve.payments.models import Channel, HeldReason, PaymentStatus
from teleserve.terminals import deposits, serials

log = get_logger("teleserve.gateway.money")

# The actor that records kiosk payments: the gateway, on behalf of authenticated
# terminals (each payment row and audit record names its terminal and serial).
GATEWAY_ACTOR = Actor(
    ActorKind.system, "tsp-gateway", "/", frozenset({"payments.record"}), "TSP/1 gateway"
)
_SOURCE_ID_MAX = 64
REPORT_EVERY_S = 10.0  # the writer's batch figures go to the log this often at most


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer to send: its err_number and its body's exact bytes."""

    err_number: str
    body: bytes


Outcome = Answer | Refusal


@dataclass(slots=True)
class Job:
    accepted: Accepted
    entry: TerminalEntry
    # Where the writer threads deliver the outcome (None when the caller settles the
    # job itself: ``MoneyWriter.settle``).
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[Outcome] | None = None

    @property
    def key(self) -> tuple[str, int]:
        h = self.accepted.frame.header
        return (h.terminal_id, h.serial)


class _Retry(Exception):
    """A concurrent transaction recorded one of the batch's serials first."""


def cash_source_id(terminal_id: str, box_id: str) -> str:
    """The payments ``source_id`` of a kiosk cash box: box ids are per terminal, so the
    terminal id is part of it (hashed past the column's width, never truncated)."""
    source = f"{terminal_id}/{box_id}"
    if len(source) <= _SOURCE_ID_MAX:
        return source
    return f"{terminal_id}/#{hashlib.sha256(box_id.encode()).hexdigest()[:40]}"


@dataclass(frozen=True, slots=True)
class _Plan:
    job: Job
    request: payments.PaymentRequest
    msisdn: str
    notes: list[dict[str, int]] | None  # cash only, canonical


def _hold_reason(
    job: Job,
    line: inventory.PayableLine | None,
    notes_sum: int | None,
    settings: Settings,
    marked: bool,
) -> str | None:
    """Why a payment is held, the most decisive reason first (PROTOCOL.md's list)."""
    body = job.accepted.body
    if marked:
        return HeldReason.reversed_original.value
    if line is None:
        return HeldReason.number_not_payable.value
    amount = body["amount"]
    if notes_sum is not None:
        accepted = settings.kiosk_note_values
        for note in body["notes"]:
            if note["value"] not in accepted:  # a tuple of six: faster than a set built here
                return HeldReason.unknown_denomination.value
        if notes_sum != amount:
            return HeldReason.amount_mismatch.value
        amount = notes_sum
    if amount > settings.kiosk_max_payment:
        return HeldReason.over_limit.value
    return None


def _plan(
    job: Job,
    lines: Mapping[str, inventory.PayableLine],
    settings: Settings,
    marked: bool,
) -> _Plan:
    accepted = job.accepted
    body = accepted.body
    h = accepted.frame.header
    msisdn: str = body["msisdn"]
    line = lines.get(msisdn)
    cash = h.serv_type == CASH_PAYMENT
    notes = deposits.canonical_notes(body["notes"]) if cash else None
    notes_sum = sum(n["value"] * n["count"] for n in notes) if notes is not None else None
    reason = _hold_reason(job, line, notes_sum, settings, marked)
    common: dict[str, Any] = {
        "idempotency_key": payments.terminal_key(h.terminal_id, h.serial),
        # The notes are the truth: a cash payment records what went into the box.
        "amount": notes_sum if notes_sum is not None else body["amount"],
        "currency": settings.currency,
        "billing_account_id": line.billing_account_id if line is not None else None,
        "service_number": msisdn,
        "terminal_id": h.terminal_id,
        "terminal_serial": str(h.serial),
        "org_path": job.entry.org_path,
        "hold_reason": reason,
    }
    if cash:
        request = payments.PaymentRequest(
            channel=Channel.kiosk_cash.value,
            source_id=cash_source_id(h.terminal_id, body["cash_box_id"]),
            **common,
        )
    else:
        card = body["card"]
        request = payments.PaymentRequest(
            channel=Channel.kiosk_card.value,
            card_auth_code=card["auth_code"],
            card_rrn=card["rrn"],
            # The acquirer's own references, for reconciliation with its settlement file.
            external_ref=f"{card['merchant_id']}:{card['batch_no']}:{card['trace_no']}"[:64],
            **common,
        )
    return _Plan(job, request, msisdn, notes)


class MoneyBatch:
    """Records one batch of payment jobs in the caller's unit of work (blocking)."""

    def __init__(self, settings: Settings, sites: SiteNames) -> None:
        self.settings = settings
        self.sites = sites

    def run(self, uow: UnitOfWork, jobs: list[Job]) -> list[Outcome]:
        conn = uow.connection
        records = serials.get_records(conn, [job.key for job in jobs])
        outcomes: list[Outcome | None] = [None] * len(jobs)
        fresh: list[tuple[int, bool]] = []  # (index, a REVERSAL marker waits under it)
        for index, job in enumerate(jobs):
            found = records.get(job.key)
            if found is not None and not found.is_marker:
                outcomes[index] = self._from_record(uow, job, found)
                continue
            refusal = check_in_service(job.accepted) or check_fields(job.accepted)
            if refusal is not None:
                outcomes[index] = refusal  # 1xxxx: not recorded, nothing changed
                continue
            fresh.append((index, found is not None))
        if fresh:
            answers = self._record(uow, [(jobs[i], marked) for i, marked in fresh])
            for (index, _marked), answer in zip(fresh, answers, strict=True):
                outcomes[index] = answer
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(jobs)
        return done

    def _from_record(self, uow: UnitOfWork, job: Job, record: serials.SerialRecord) -> Outcome:
        h = job.accepted.frame.header
        if record.matches(h.serv_type, serials.body_digest(job.accepted.frame.body)):
            return Answer(record.err_number, record.answer.encode("utf-8"))
        last = serials.last_serial(uow.connection, h.terminal_id)
        return job.accepted.refuse(errors.SERIAL_CONFLICT, {"last_serial": last})

    def _record(self, uow: UnitOfWork, items: list[tuple[Job, bool]]) -> list[Outcome]:
        conn = uow.connection
        settings = self.settings
        lines = inventory.payable_lines(conn, {job.accepted.body["msisdn"] for job, _ in items})
        plans = [_plan(job, lines, settings, marked) for job, marked in items]
        recorded = payments.record_payments(uow, [plan.request for plan in plans])
        balances = self._balances_after(conn, plans, recorded)
        now = utcnow()
        day = business_date(now, settings.timezone)
        outcomes: list[Outcome] = []
        new_records: list[serials.SerialRecord] = []
        marker_records: list[serials.SerialRecord] = []
        cash_in: list[deposits.Deposit] = []
        for (plan, outcome), balance in zip(
            zip(plans, recorded, strict=True), balances, strict=True
        ):
            job = plan.job
            h = job.accepted.frame.header
            if outcome.error is not None:
                # Cannot happen for a body that passed the field rules (they are never
                # looser than payments' checks); if it does, nothing of it was written.
                log.error(
                    "gateway.payment_refused_by_ledger",
                    terminal_id=h.terminal_id,
                    serial=h.serial,
                    code=outcome.error.code,
                )
                outcomes.append(job.accepted.refuse(errors.INTERNAL))
                continue
            assert outcome.receipt_no is not None and outcome.status is not None
            text = encode_body(self._answer_body(plan, outcome, balance, now))
            record = serials.SerialRecord(
                terminal_id=h.terminal_id,
                serial=h.serial,
                serv_type=h.serv_type,
                body_sha256=serials.body_digest(job.accepted.frame.body),
                err_number=SUCCESS,
                answer=text.decode("utf-8"),
                created_at=now,
            )
            marked = plan.request.hold_reason == HeldReason.reversed_original
            (marker_records if marked else new_records).append(record)
            if plan.notes is not None and not outcome.replayed:
                assert outcome.payment_id is not None
                cash_in.append(
                    deposits.Deposit(
                        payment_id=outcome.payment_id,
                        terminal_id=h.terminal_id,
                        box_id=job.accepted.body["cash_box_id"],
                        serial=h.serial,
                        notes=plan.notes,
                        business_date=day,
                        created_at=now,
                    )
                )
            outcomes.append(Answer(SUCCESS, text))
        deposits.record_deposits(conn, cash_in)
        if marker_records and serials.replace_markers(conn, marker_records) != len(marker_records):
            raise _Retry  # a marker vanished under us (cannot on one writer; retry anyway)
        # ``run`` read every key of the batch in this transaction: the new ones are absent.
        claims = serials.insert_or_get(conn, new_records, absent=True)
        if not all(claim.inserted for claim in claims):
            raise _Retry
        return outcomes

    def _balances_after(
        self,
        conn: Any,
        plans: list[_Plan],
        recorded: list[payments.PaymentOutcome],
    ) -> list[int | None]:
        """Each completed payment's ``balance_after``, exact inside the batch: the
        account's balance now (this transaction holds its row until commit) less the
        later payments of this batch to the same account."""
        credited = [
            outcome.billing_account_id
            if outcome.error is None and outcome.status == PaymentStatus.completed
            else None
            for outcome in recorded
        ]
        now = payments.customer_balances(conn, {ba for ba in credited if ba is not None})
        result: list[int | None] = [None] * len(plans)
        running = dict(now)
        for index in range(len(plans) - 1, -1, -1):
            account = credited[index]
            if account is None or account not in running:
                continue
            result[index] = running[account]
            running[account] -= int(recorded[index].amount or 0)
        return result

    def _answer_body(
        self,
        plan: _Plan,
        outcome: payments.PaymentOutcome,
        balance: int | None,
        now: datetime,
    ) -> dict[str, Any]:
        job = plan.job
        h = job.accepted.frame.header
        status = tsp_status(str(outcome.status))
        body: dict[str, Any] = {"txn_id": outcome.receipt_no, "status": status}
        if outcome.held_reason is not None:
            body["held_reason"] = outcome.held_reason
        if status == "completed" and balance is not None:
            body["balance_after"] = balance
        facts = ReceiptFacts(
            place=self.sites.get(job.entry.site_id, job.entry.org_path),
            terminal_id=h.terminal_id,
            serial=h.serial,
            # The payment's own time, as a reprint (2010) shows it: the batch's ``now`` is
            # read after the payments and may fall in the next second.
            at=datetime.fromisoformat(outcome.created_at) if outcome.created_at else now,
            msisdn=plan.msisdn,
            amount=int(outcome.amount or 0),
            currency=self.settings.currency,
            status=status,
            held_reason=outcome.held_reason,
            txn_id=str(outcome.receipt_no),
            balance_after=body.get("balance_after"),
        )
        body["receipt"] = {"lines": receipt_lines(facts, self.settings.timezone)}
        return body


_STOP = object()


class MoneyWriter:
    """The writer threads and their queue (one per gateway process).

    ``threads=False``: no threads; the owner calls ``settle`` itself (the money service of
    ``gateway.processes`` on SQLite, which records batches on its own event loop thread:
    no second thread to hand the GIL back and forth with).
    """

    def __init__(
        self, engine: Engine, settings: Settings, sites: SiteNames, *, threads: bool = True
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.batch = MoneyBatch(settings, sites)
        self.max_batch = settings.gateway_money_batch
        self.window_s = settings.gateway_money_window_ms / 1000
        count = 1 if engine.dialect.name == "sqlite" else settings.gateway_money_writers
        if not threads:
            count = 0
        self._queue: queue.SimpleQueue[Job | object] = queue.SimpleQueue()
        # Each thread that records batches keeps one connection for all of them: a batch
        # is a Core-only unit of work on it (no pool checkout, no Session).
        self._local = threading.local()
        self._held: list[Connection] = []
        self._held_guard = threading.Lock()
        # Committed batches and the requests in them (the bench and tests read them).
        self.batches = 0
        self.requests = 0
        self._reported = (time.monotonic(), 0, 0)  # when, batches, requests
        # Seconds spent since the last report: waiting for the transaction (SQLite's write
        # lock), recording the batch, committing (audit and outbox rows, then the fsync).
        self._spent = [0.0, 0.0, 0.0]
        self._threads = [
            threading.Thread(target=self._loop, name=f"tsp-money-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, accepted: Accepted, entry: TerminalEntry) -> Outcome:
        return await self.enqueue(accepted, entry)

    def enqueue(self, accepted: Accepted, entry: TerminalEntry) -> asyncio.Future[Outcome]:
        """Queue a payment; the future (of the running loop) gets its outcome after the
        commit (``gateway.processes`` attaches a callback instead of awaiting it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        self._queue.put(Job(accepted, entry, loop, future))
        return future

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=10)
        with self._held_guard:
            held, self._held = self._held, []
        for connection in held:
            connection.close()
        log.info(
            "gateway.money_writer_stopped",
            batches=self.batches,
            requests=self.requests,
            mean_batch=round(self.requests / self.batches, 1) if self.batches else 0,
        )

    # -- the writer threads ----------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs: list[Job] = [first]  # type: ignore[list-item]
            stop = False
            # The window: wait this long for more before writing. Waiting releases the
            # GIL, so the event loop can read the requests already on their way — a
            # batch of twenty costs little more than a batch of one.
            deadline = time.monotonic() + self.window_s
            while len(jobs) < self.max_batch:
                try:
                    remaining = deadline - time.monotonic()
                    if remaining > 0:
                        more = self._queue.get(timeout=remaining)
                    else:
                        more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                jobs.append(more)  # type: ignore[arg-type]
            self._settle(jobs)
            if stop:
                return

    def _report(self) -> None:
        """Every ``REPORT_EVERY_S`` at most: the batches and payments since the last
        report (the size of the batches is what the money path's cost depends on)."""
        when, batches, requests = self._reported
        now = time.monotonic()
        if now - when < REPORT_EVERY_S:
            return
        self._reported = (now, self.batches, self.requests)
        done = self.batches - batches
        begin, record, commit = (round(1000 * spent / max(done, 1), 1) for spent in self._spent)
        self._spent = [0.0, 0.0, 0.0]
        log.info(
            "gateway.money_writer",
            seconds=round(now - when, 1),
            batches=done,
            requests=self.requests - requests,
            mean_batch=round((self.requests - requests) / done, 1) if done else 0,
            # Per batch, in ms: where a batch's time goes.
            begin_ms=begin,
            record_ms=record,
            commit_ms=commit,
        )

    def settle(self, jobs: list[Job]) -> list[Outcome]:
        """Record ``jobs`` (blocking) and return their outcomes, in order."""
        try:
            return self._commit(jobs)
        except Exception:
            if len(jobs) == 1:
                log.exception("gateway.payment_failed", terminal_id=jobs[0].key[0])
                return [jobs[0].accepted.refuse(errors.INTERNAL)]
            # One at a time: a bad request must not take its batch down with it.
            log.exception("gateway.payment_batch_failed", size=len(jobs))
            return [self.settle([job])[0] for job in jobs]

    def _settle(self, jobs: list[Job]) -> None:
        outcomes = self.settle(jobs)
        # One wake-up of each event loop per batch, not one per payment (each is a write
        # to the loop's self-pipe and a turn of the loop).
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Outcome], Outcome]]]
        by_loop = {}
        for job, outcome in zip(jobs, outcomes, strict=True):
            assert job.loop is not None and job.future is not None
            by_loop.setdefault(job.loop, []).append((job.future, outcome))
        for loop, answers in by_loop.items():
            loop.call_soon_threadsafe(_resolve_all, answers)

    def _connection(self) -> Connection:
        """This thread's connection, made again if the last one broke."""
        last: Connection | None = getattr(self._local, "connection", None)
        if last is not None and not (last.closed or last.invalidated):
            return last
        connection = self._local.connection = self.engine.connect()
        with self._held_guard:
            if last is not None and last in self._held:
                self._held.remove(last)
            self._held.append(connection)
        if last is not None:
            with contextlib.suppress(Exception):
                last.close()
        return connection

    def _commit(self, jobs: list[Job]) -> list[Outcome]:
        connection = self._connection()  # a new one if a failed batch broke the last
        for _attempt in range(3):
            try:
                started = time.perf_counter()
                with UnitOfWork(self.engine, GATEWAY_ACTOR, connection=connection) as uow:
                    uow.connection  # noqa: B018 (begins: on SQLite, waits for the write lock)
                    begun = time.perf_counter()
                    outcomes = self.batch.run(uow, jobs)
                    recorded = time.perf_counter()
                    uow.commit()
                    # Writer threads race on these: figures, not a ledger.
                    spent = self._spent
                    spent[0] += begun - started
                    spent[1] += recorded - begun
                    spent[2] += time.perf_counter() - recorded
                    self.batches += 1
                    self.requests += len(jobs)
                    self._report()
                    return outcomes
            except _Retry:
                continue
        raise RuntimeError("serial records kept changing under the money batch")


def _resolve_all(answers: list[tuple[asyncio.Future[Outcome], Outcome]]) -> None:
    for future, outcome in answers:
        if not future.done():  # the connection may have gone meanwhile
            future.set_result(outcome)
