"""Property test: any sequence of operations on one number agrees with a small model of
the life cycle (including time passing, lapses and sweeps)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.errors import Conflict
from teleserve.numbers import service
from teleserve.numbers.models import NumberStatus

from .conftest import SZ, card

HOLDERS = st.sampled_from(["h:a", "h:b"])
AGENT = Actor(
    ActorKind.staff, "agent", SZ, frozenset({"numbers.read", "numbers.reserve", "numbers.assign"})
)
ADMIN = Actor(ActorKind.staff, "admin", SZ, frozenset({"*"}))


@dataclass
class Model:
    status: NumberStatus = NumberStatus.free
    holder: str | None = None
    until: datetime | None = None  # reservation or quarantine end

    def effective(self, now: datetime) -> NumberStatus:
        if self.status in (NumberStatus.reserved, NumberStatus.quarantine):
            assert self.until is not None
            if self.until <= now:
                return NumberStatus.free
        return self.status


def test_life_cycle_matches_model(pool, frozen_clock):
    # Its own range, large enough for every example hypothesis may run while shrinking.
    pool.run(
        service.create_range, org_path=SZ, kind="mobile", prefix="1380020", start="0000", end="4999"
    )
    numbers = (f"1380020{n:04d}" for n in count())

    class LifeCycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            # A fresh number (and a fresh ID card) per example: no database reset needed.
            self.number = next(numbers)
            self.card = card(int(self.number[-4:]))
            self.model = Model()

        def now(self) -> datetime:
            return frozen_clock.now()

        def attempt(self, allowed: bool, call, actor: Actor = AGENT) -> None:  # type: ignore[no-untyped-def]
            try:
                with pool.make_uow(actor) as uow:
                    call(uow)
                    uow.commit()
            except Conflict:
                assert not allowed, "refused a move the model allows"
            else:
                assert allowed, "allowed a move the model refuses"

        @rule(holder=HOLDERS, minutes=st.sampled_from([1, 30]))
        def reserve(self, holder: str, minutes: int) -> None:
            state = self.model.effective(self.now())
            allowed = state is NumberStatus.free or (
                state is NumberStatus.reserved and self.model.holder == holder
            )
            self.attempt(allowed, lambda uow: service.reserve(uow, self.number, holder, minutes))
            if allowed:
                self.model = Model(
                    NumberStatus.reserved, holder, self.now() + timedelta(minutes=minutes)
                )

        @rule(holder=HOLDERS)
        def cancel(self, holder: str) -> None:
            state = self.model.effective(self.now())
            allowed = state is NumberStatus.reserved and self.model.holder == holder
            self.attempt(allowed, lambda uow: service.cancel_reservation(uow, self.number, holder))
            if allowed:
                self.model = Model()

        @rule(holder=HOLDERS, admin=st.booleans())
        def assign(self, holder: str, admin: bool) -> None:
            state = self.model.effective(self.now())
            allowed = (state is NumberStatus.reserved and self.model.holder == holder) or (
                admin and state is NumberStatus.free
            )
            self.attempt(
                allowed,
                lambda uow: service.assign(
                    uow, self.number, holder=holder, id_index=self.card, customer_id="C"
                ),
                ADMIN if admin else AGENT,
            )
            if allowed:
                self.model = Model(NumberStatus.assigned, holder)

        @rule()
        def release(self) -> None:
            allowed = self.model.effective(self.now()) is NumberStatus.assigned
            self.attempt(allowed, lambda uow: service.release(uow, self.number))
            if allowed:
                self.model = Model(NumberStatus.quarantine, None, self.now() + timedelta(days=90))

        @rule(minutes=st.sampled_from([1, 29, 31, 60 * 24 * 90]))
        def wait(self, minutes: int) -> None:
            frozen_clock.advance(minutes=minutes)

        @rule()
        def sweep(self) -> None:
            with pool.make_uow(ADMIN) as uow:
                service.release_expired(uow)
                service.release_quarantined(uow)
                uow.commit()

        @invariant()
        def agrees(self) -> None:
            with pool.make_uow(AGENT) as uow:
                seen = service.get(uow, self.number)
                held = service.count_for_id_card(uow, self.card)
            state = self.model.effective(self.now())
            assert seen.status is state
            assert held == (1 if state is NumberStatus.assigned else 0)
            if state is NumberStatus.reserved:
                assert (seen.holder, seen.reserved_until) == (self.model.holder, self.model.until)

    run_state_machine_as_test(
        LifeCycle,
        settings=hypothesis_settings(max_examples=25, stateful_step_count=12, deadline=None),
    )
