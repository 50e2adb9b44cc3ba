"""A hypothesis state machine over the ledger: random payments (with retries and
conflicting bodies, in batches), reversals, postings, settlements and account closures,
checked after every step against a model and against ``check_ledger``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import Engine

from teleserve.core.errors import Conflict, ValidationError
from teleserve.core.uow import UnitOfWork
from teleserve.payments import service as payments
from teleserve.payments.schemas import CustomerAccountSpec, PaymentRequest

from .helpers import HALL_A, snapshot

CHANNELS = {
    "kiosk_cash": {"source_id": "BOX1", "terminal_id": "T1", "terminal_serial": "s"},
    "counter_cash": {"source_id": "DESK1"},
    "kiosk_card": {"terminal_id": "T2", "terminal_serial": "s", "card_rrn": "123"},
    "web": {},
}


@dataclass
class Paid:
    """The model of one recorded payment."""

    payment_id: str
    amount: int
    status: str
    account: str | None  # billing account holding it (completed / pending)
    first_answer: payments.PaymentOutcome
    settled: bool = False


@dataclass
class Model:
    balance: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    suspense: int = 0
    closed: set[str] = field(default_factory=set)
    by_key: dict[str, tuple[PaymentRequest, str]] = field(default_factory=dict)  # key → (body, id)
    payments: dict[str, Paid] = field(default_factory=dict)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, make_uow: Callable[..., UnitOfWork], engine: Engine) -> None:
        super().__init__()
        self.make_uow = make_uow
        self.engine = engine
        # Examples share the test's database: fresh names keep them apart.
        self.run = uuid.uuid4().hex[:8]
        self.accounts = [f"{self.run}-A{i}" for i in range(3)]
        self.model = Model(
            balance=dict.fromkeys(self.accounts, 0), pending=dict.fromkeys(self.accounts, 0)
        )
        self.serial = 0
        with make_uow() as uow:
            payments.ensure_customer_accounts(
                uow, [CustomerAccountSpec(a, f"C-{a}", HALL_A) for a in self.accounts]
            )
            self.suspense_start = payments.system_account_balance(uow, "suspense").balance
            uow.commit()

    # -- building requests ---------------------------------------------------------------

    def _fresh_request(self, data: st.DataObject) -> PaymentRequest:
        self.serial += 1
        channel = data.draw(st.sampled_from(sorted(CHANNELS)))
        target = data.draw(st.sampled_from([*self.accounts, "unknown", None]))
        amount = data.draw(st.one_of(st.integers(1, 10**7), st.integers(-100, 0)))
        if target == "unknown":
            target = f"{self.run}-unknown"
        return PaymentRequest(
            f"{self.run}-k{self.serial}",
            channel,
            amount,
            billing_account_id=target,
            service_number="13800138000" if target is None else None,
            pending=data.draw(st.booleans()),
            **CHANNELS[channel],
        )

    def _request(self, data: st.DataObject, batch: list[PaymentRequest]) -> PaymentRequest:
        known = [body for body, _ in self.model.by_key.values()] + [r for r in batch]
        kind = data.draw(st.sampled_from(["fresh", "fresh", "retry", "conflict"]))
        if kind == "fresh" or not known:
            return self._fresh_request(data)
        earlier = data.draw(st.sampled_from(known))
        if kind == "retry":
            return earlier
        return dataclasses.replace(earlier, amount=earlier.amount + 1)

    # -- the model's expectation ---------------------------------------------------------

    def _expect(self, batch: list[PaymentRequest]) -> list[tuple[str, PaymentRequest | None]]:
        """Per item: ``new`` / ``replay`` (of which body) / ``invalid`` / ``conflict``."""
        seen: dict[str, PaymentRequest] = {
            key: body for key, (body, _) in self.model.by_key.items()
        }
        expected: list[tuple[str, PaymentRequest | None]] = []
        for request in batch:
            if request.amount <= 0:
                expected.append(("invalid", None))
                continue
            first = seen.get(request.idempotency_key)
            if first is None:
                seen[request.idempotency_key] = request
                expected.append(("new", request))
            elif first == request:
                expected.append(("replay", first))
            else:
                expected.append(("conflict", None))
        return expected

    def _apply_new(self, request: PaymentRequest, outcome: payments.PaymentOutcome) -> None:
        target = request.billing_account_id
        if target in self.model.balance and target not in self.model.closed:
            status = "pending" if request.pending else "completed"
            book = self.model.pending if request.pending else self.model.balance
            book[target] += request.amount
        else:
            status, target = "held", None
            self.model.suspense += request.amount
        assert outcome.status == status, (outcome, request)
        assert outcome.payment_id is not None
        self.model.by_key[request.idempotency_key] = (request, outcome.payment_id)
        self.model.payments[outcome.payment_id] = Paid(
            outcome.payment_id, request.amount, status, target, outcome
        )

    # -- rules ---------------------------------------------------------------------------

    @rule(data=st.data(), size=st.integers(1, 4))
    def record(self, data: st.DataObject, size: int) -> None:
        batch: list[PaymentRequest] = []
        for _ in range(size):
            batch.append(self._request(data, batch))
        expected = self._expect(batch)
        before = snapshot(self.engine)
        if size == 1 and expected[0][0] in ("invalid", "conflict"):
            error = ValidationError if expected[0][0] == "invalid" else Conflict
            with self.make_uow() as uow, pytest.raises(error):
                payments.record_payments(uow, batch)
            assert snapshot(self.engine) == before
            return
        with self.make_uow() as uow:
            outcomes = payments.record_payments(uow, batch)
            uow.commit()
        batch_answers: dict[str, payments.PaymentOutcome] = {}
        for request, (kind, _body), outcome in zip(batch, expected, outcomes, strict=True):
            assert outcome.idempotency_key == request.idempotency_key
            if kind == "invalid":
                assert outcome.error is not None and outcome.error.code == "invalid_amount"
            elif kind == "conflict":
                assert outcome.error is not None and outcome.error.code == "idempotency_conflict"
            elif kind == "new":
                assert outcome.ok and not outcome.replayed
                self._apply_new(request, outcome)
                batch_answers[request.idempotency_key] = outcome
            else:
                assert outcome.ok and outcome.replayed
                first = batch_answers.get(request.idempotency_key)
                if first is None:
                    _, payment_id = self.model.by_key[request.idempotency_key]
                    first = self.model.payments[payment_id].first_answer
                assert dataclasses.replace(outcome, replayed=False) == first
        if all(kind != "new" for kind, _ in expected):
            assert snapshot(self.engine) == before  # retries and refusals change nothing

    @rule(data=st.data())
    def retry_alone(self, data: st.DataObject) -> None:
        if not self.model.by_key:
            return
        key = data.draw(st.sampled_from(list(self.model.by_key)))
        body, payment_id = self.model.by_key[key]
        before = snapshot(self.engine)
        with self.make_uow() as uow:
            [outcome] = payments.record_payments(uow, [body])
            uow.commit()
        assert outcome.replayed
        assert (
            dataclasses.replace(outcome, replayed=False)
            == self.model.payments[payment_id].first_answer
        )
        assert snapshot(self.engine) == before

    def _pick(self, data: st.DataObject) -> Paid | None:
        if not self.model.payments:
            return None
        return self.model.payments[data.draw(st.sampled_from(list(self.model.payments)))]

    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        paid = self._pick(data)
        if paid is None:
            return
        before = snapshot(self.engine)
        with self.make_uow() as uow:
            view = payments.reverse_payment(uow, paid.payment_id, "test")
            uow.commit()
        assert view.status == "reversed"
        if paid.status == "reversed":
            assert snapshot(self.engine) == before
        elif paid.status == "completed":
            assert paid.account is not None
            self.model.balance[paid.account] -= paid.amount
        elif paid.status == "pending":
            assert paid.account is not None
            self.model.pending[paid.account] -= paid.amount
        else:
            self.model.suspense -= paid.amount
        paid.status = "reversed"

    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        paid = self._pick(data)
        if paid is None:
            return
        with self.make_uow() as uow:
            if paid.status not in ("pending", "completed"):
                with pytest.raises(Conflict):
                    payments.post_pending(uow, paid.payment_id)
                return
            view = payments.post_pending(uow, paid.payment_id)
            uow.commit()
        if paid.status == "pending":
            assert paid.account is not None
            self.model.pending[paid.account] -= paid.amount
            if paid.account in self.model.closed:
                self.model.suspense += paid.amount
                paid.status, paid.account = "held", None
            else:
                self.model.balance[paid.account] += paid.amount
                paid.status = "completed"
        assert view.status == paid.status

    @rule(data=st.data())
    def settle(self, data: st.DataObject) -> None:
        paid = self._pick(data)
        if paid is None:
            return
        target = data.draw(st.sampled_from(self.accounts))
        settles = paid.status == "held" and target not in self.model.closed
        repeats = paid.settled and paid.status == "completed" and paid.account == target
        before = snapshot(self.engine)
        with self.make_uow() as uow:
            if not (settles or repeats):
                with pytest.raises(Conflict):
                    payments.settle_held(uow, paid.payment_id, target)
                return
            view = payments.settle_held(uow, paid.payment_id, target)
            uow.commit()
        assert view.status == "completed" and view.billing_account_id == target
        if repeats:
            assert snapshot(self.engine) == before
            return
        self.model.suspense -= paid.amount
        self.model.balance[target] += paid.amount
        paid.status, paid.account, paid.settled = "completed", target, True

    @rule(data=st.data())
    def close_account(self, data: st.DataObject) -> None:
        target = data.draw(st.sampled_from(self.accounts))
        with self.make_uow() as uow:
            payments.close_customer_account(uow, target)
            uow.commit()
        self.model.closed.add(target)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def ledger_is_consistent(self) -> None:
        with self.make_uow() as uow:
            assert payments.check_ledger(uow) == []
            for account in self.accounts:
                figures = payments.account_balance(uow, account)
                assert figures.balance == self.model.balance[account]
                assert figures.pending_credit == self.model.pending[account]
            suspense = payments.system_account_balance(uow, "suspense").balance
        assert suspense - self.suspense_start == self.model.suspense


def test_ledger_state_machine(make_uow: Callable[..., UnitOfWork], engine: Engine) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(make_uow, engine),
        # Examples come from the loaded profile (dev 30, ci 60); keep each one short.
        settings=settings(stateful_step_count=12),
    )
