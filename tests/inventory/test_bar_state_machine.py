"""A hypothesis state machine over one line's lifecycle and bars.

Random actors add and lift random bars, payments arrive, the plan changes, the line may be
activated or terminated. A model kept here predicts every outcome from the rules as the
business states them (not from the service's tables); invariants compare it with what is
stored after every step.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.errors import Conflict, DomainError, NotFound, PermissionDenied
from teleserve.inventory import service
from teleserve.inventory.schemas import Bar, SubscriptionStatus
from tests.inventory.conftest import AGENT, GZ_AGENT, SUPERVISOR, SZ, TERMINAL, new_line

_numbers = itertools.count(1)

STAFF_ACTORS = {
    "agent": AGENT,  # inventory.write only
    "supervisor": SUPERVISOR,  # + inventory.bars.lost/admin/fraud
    "system": SYSTEM,  # credit control, fraud detection
    "outsider": GZ_AGENT,  # another city: the line does not exist for it
}
# The business rules, restated: who may place / lift each bar.
MAY_PLACE = {
    Bar.credit: {"agent", "supervisor", "system"},
    Bar.lost: {"agent", "supervisor", "owner"},
    Bar.keep_number: {"agent", "supervisor", "owner"},
    Bar.admin: {"supervisor"},
    Bar.fraud: {"supervisor", "system"},
}
MAY_LIFT = {
    Bar.credit: {"agent", "supervisor", "system"},
    Bar.lost: {"supervisor"},
    Bar.keep_number: {"agent", "supervisor", "owner"},
    Bar.admin: {"supervisor"},
    Bar.fraud: {"supervisor"},
}
# Weighted towards actors who may act, so that lines collect several bars.
WHO = st.sampled_from(["supervisor", "supervisor", "agent", "owner", "system", "outsider"])
NEVER_LIFTED_BY_PAYMENT = {Bar.lost, Bar.admin, Bar.fraud, Bar.keep_number}
FREEZE_SERVICES = {Bar.admin, Bar.fraud}


@dataclass
class Model:
    status: SubscriptionStatus
    bars: set[Bar] = field(default_factory=set)
    plan: str = "P_BASIC"


def run_bar_machine(make_uow, step_count: int) -> None:
    class LineMachine(RuleBasedStateMachine):
        @initialize(start_active=st.sampled_from([True, True, True, False]))
        def create_line(self, start_active: bool) -> None:
            customer = f"C-SM-{next(_numbers)}"
            self.owner = Actor(ActorKind.customer, customer, SZ)
            status = "active" if start_active else "pending"
            with make_uow(SYSTEM) as uow:
                line = service.create_subscription(
                    uow,
                    new_line(
                        service_number=f"1500000{next(_numbers):04d}",
                        customer_id=customer,
                        status=status,
                    ),
                )
                uow.commit()
            self.sub_id = line.id
            self.model = Model(SubscriptionStatus(status))

        def actor(self, name: str) -> Actor:
            return self.owner if name == "owner" else STAFF_ACTORS[name]

        def attempt(self, actor: Actor, change, expected: type[DomainError] | None):
            """Run ``change`` in its own unit of work; it must fail with ``expected`` (and
            change nothing) or succeed when ``expected`` is None."""
            with make_uow(actor) as uow:
                if expected is None:
                    result = change(uow)
                    uow.commit()
                    return result
                with pytest.raises(expected):
                    change(uow)
            return None

        def bar_outcome(self, who: str, bar: Bar, placing: bool) -> type[DomainError] | None:
            if who == "outsider":
                return NotFound
            allowed = MAY_PLACE[bar] if placing else MAY_LIFT[bar]
            if who not in allowed:
                return PermissionDenied
            if self.model.status is not SubscriptionStatus.active:
                return Conflict
            if placing and (
                bar in self.model.bars or (bar is Bar.keep_number and Bar.credit in self.model.bars)
            ):
                return Conflict
            if not placing and bar not in self.model.bars:
                return Conflict
            return None

        @rule(who=WHO, bar=st.sampled_from(list(Bar)))
        def add_bar(self, who: str, bar: Bar) -> None:
            expected = self.bar_outcome(who, bar, placing=True)
            self.attempt(
                self.actor(who),
                lambda uow: service.add_bar(uow, self.sub_id, bar, "random bar"),
                expected,
            )
            if expected is None:
                self.model.bars.add(bar)

        @rule(who=WHO, bar=st.sampled_from(list(Bar)))
        def lift_bar(self, who: str, bar: Bar) -> None:
            expected = self.bar_outcome(who, bar, placing=False)
            self.attempt(
                self.actor(who),
                lambda uow: service.lift_bar(uow, self.sub_id, bar, "random lift"),
                expected,
            )
            if expected is None:
                self.model.bars.discard(bar)

        @rule(
            who=st.sampled_from(["system", "terminal", "agent"]),
            by_number=st.booleans(),
        )
        def payment(self, who: str, by_number: bool) -> None:
            actor = TERMINAL if who == "terminal" else STAFF_ACTORS[who]
            key = self.stored().service_number if by_number else self.sub_id
            if self.model.status is SubscriptionStatus.terminated and by_number:
                return  # no live line has the number any more
            kept_before = self.model.bars & NEVER_LIFTED_BY_PAYMENT
            lifted = self.attempt(actor, lambda uow: service.on_payment_received(uow, key), None)
            active = self.model.status is SubscriptionStatus.active
            expected = (Bar.credit,) if active and Bar.credit in self.model.bars else ()
            assert lifted == expected
            self.model.bars -= set(expected)
            # A payment never lifts a lost, admin, fraud or keep-number bar.
            assert self.stored().bar_types & NEVER_LIFTED_BY_PAYMENT == kept_before

        @rule()
        def change_plan(self) -> None:
            target = "P_PLUS" if self.model.plan == "P_BASIC" else "P_BASIC"
            expected: type[DomainError] | None = None
            if self.model.status is SubscriptionStatus.terminated or (
                self.model.bars & FREEZE_SERVICES
            ):
                expected = Conflict
            self.attempt(AGENT, lambda uow: service.change_plan(uow, self.sub_id, target), expected)
            if expected is None:
                self.model.plan = target

        @rule()
        def activate(self) -> None:
            expected = None if self.model.status is SubscriptionStatus.pending else Conflict
            self.attempt(AGENT, lambda uow: service.activate(uow, self.sub_id), expected)
            if expected is None:
                self.model.status = SubscriptionStatus.active

        @rule(roll=st.integers(0, 5))
        def terminate(self, roll: int) -> None:
            if roll:  # rarely, so that bars get a long life before the end
                return
            terminated = self.model.status is SubscriptionStatus.terminated
            self.attempt(
                AGENT,
                lambda uow: service.terminate(uow, self.sub_id, "random end"),
                Conflict if terminated else None,
            )
            self.model.status = SubscriptionStatus.terminated

        def stored(self):
            with make_uow(SYSTEM) as uow:
                return service.get_subscription(uow, self.sub_id)

        @invariant()
        def stored_state_equals_model(self) -> None:
            line = self.stored()
            assert line.status is self.model.status
            assert line.bar_types == self.model.bars
            assert line.plan_code == self.model.plan
            # "Suspended" is exactly: active with at least one bar.
            assert line.suspended == (
                line.status is SubscriptionStatus.active and bool(line.bar_types)
            )

    run_state_machine_as_test(
        LineMachine, settings=hypothesis_settings(stateful_step_count=step_count)
    )


def test_bar_state_machine(make_uow, catalog):
    run_bar_machine(make_uow, step_count=25)
