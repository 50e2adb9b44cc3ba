"""``teleserve seed``: a realistic demo operator built through the services' batch APIs.

Everything goes through the owning domain's service functions — the same write paths the
console and the APIs use — in batches: the organisation tree and staff (iam), the
business calendar, the catalog, the number pool (numbers), customers with identity
documents, accounts and service passwords (customers), ledger accounts and opening
top-ups (payments), lines (inventory) and number assignment under the real-name rule.

Expensive hashes are computed once: every demo staff member shares one argon2 hash of
``DEMO_PASSWORD``, every line one hash of ``DEMO_SERVICE_PASSWORD``. The fake people
themselves (``demo.people``) are made in a helper process, a batch ahead of the writer.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from teleserve.catalog import service as catalog
from teleserve.catalog.schemas import OfferingSpec, RewardSpec
from teleserve.core.calendar import seed_default_calendar
from teleserve.core.crypto import blind_index
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.models import AccountKind
from teleserve.customers.schemas import AccountSpec, CustomerRegistration, ServiceNumberSpec
from teleserve.demo import people
from teleserve.demo.catalog import OFFERINGS, REWARDS
from teleserve.demo.data import CITIES, OPERATOR, PROVINCE, STAFF, DemoCity
from teleserve.iam import passwords as staff_passwords
from teleserve.iam import service as iam
from teleserve.iam.roles import MFA_REQUIRED_ROLES
from teleserve.iam.schemas import OrgUnitSpec, StaffUserSpec
from teleserve.inventory import service as inventory
from teleserve.inventory.schemas import LineKind, NewSubscription, SubscriptionStatus
from teleserve.numbers import service as numbers
from teleserve.payments import service as payments
from teleserve.payments.schemas import CustomerAccountSpec, PaymentRequest

DEMO_PASSWORD = "Teleserve-demo-2026"  # noqa: S105 (demo mode only; printed by `teleserve demo`)
DEMO_SERVICE_PASSWORD = "802613"  # noqa: S105 (demo lines' service password)
# A fixed TOTP secret for the demo users who must use MFA, printed with the logins so a
# newcomer can add it to an authenticator app. Demo databases only.
DEMO_TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"  # noqa: S105
BATCH = 2_000


@dataclass
class SeedResult:
    customers: int = 0
    accounts: int = 0
    lines: int = 0
    numbers_in_pool: int = 0
    payments: int = 0
    staff: int = 0
    offerings: int = 0
    seconds: float = 0.0
    customer_seconds: float = 0.0
    logins: list[str] = field(default_factory=list)

    @property
    def customers_per_second(self) -> float:
        return self.customers / self.customer_seconds if self.customer_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True,
            "customers": self.customers,
            "accounts": self.accounts,
            "lines": self.lines,
            "numbers_in_pool": self.numbers_in_pool,
            "payments": self.payments,
            "staff": self.staff,
            "offerings": self.offerings,
            "seconds": round(self.seconds, 2),
            "customers_per_second": round(self.customers_per_second),
            "logins": self.logins,
        }

    def summary(self) -> str:
        return (
            f"{self.customers:,} customers, {self.accounts:,} accounts, {self.lines:,} lines, "
            f"{self.numbers_in_pool:,} numbers, {self.payments:,} payments, {self.staff} staff "
            f"in {self.seconds:.1f} s ({self.customers_per_second:,.0f} customers/s)"
        )


def seed_database(
    engine: Engine, *, customers: int = 10_000, progress: bool = True, rng_seed: int = 2026
) -> SeedResult:
    """Build the demo operator into an empty, migrated database."""
    started = time.perf_counter()
    result = SeedResult()
    plan = people.customer_plan(customers)
    # More than one batch: the next batch's people are made in a helper process while
    # this one writes (started first, so its start-up overlaps the set-up below).
    make = people.Prefetched if customers > BATCH else people.MadeHere
    batches: people.Batches = make(plan, rng_seed, BATCH)
    try:
        with UnitOfWork(engine) as uow:
            orgs = _organisation(uow)
            result.staff = _staff(uow, orgs, result)
            seed_default_calendar(uow.connection)
            result.offerings = _catalog(uow)
            uow.commit()
        with UnitOfWork(engine) as uow:
            result.numbers_in_pool = _number_pool(uow, orgs, plan)
            uow.commit()
        _service_password_hash()  # one argon2 hash for every line, made before the batches
        customer_started = time.perf_counter()
        with _progress(progress) as bar, _cyclic_gc_paused():
            task = bar.add_task("customers", total=customers)
            for batch in batches:
                _customer_batch(engine, orgs, batch, result)
                bar.advance(task, len(batch))
        result.customer_seconds = time.perf_counter() - customer_started
    finally:
        batches.close()  # stops the helper process if the seed failed half-way
    result.seconds = time.perf_counter() - started
    return result


# -- organisation and staff ------------------------------------------------------------


def _organisation(uow: UnitOfWork) -> dict[str, Any]:
    specs = [
        OrgUnitSpec(code=OPERATOR[0], name_zh=OPERATOR[1], name_en=OPERATOR[2], level="operator"),
        OrgUnitSpec(
            code=PROVINCE[0],
            name_zh=PROVINCE[1],
            name_en=PROVINCE[2],
            level="province",
            parent_code=OPERATOR[0],
        ),
    ]
    for city in CITIES:
        specs.append(
            OrgUnitSpec(
                code=city.code,
                name_zh=city.name_zh,
                name_en=f"{city.name_en} Branch",
                level="city",
                parent_code=PROVINCE[0],
            )
        )
        for code, name_zh, name_en in city.halls:
            specs.append(
                OrgUnitSpec(
                    code=code, name_zh=name_zh, name_en=name_en, level="hall", parent_code=city.code
                )
            )
    units = iam.create_org_units_batch(uow, specs)
    return {unit.code: unit for unit in units}


def _staff(uow: UnitOfWork, orgs: dict[str, Any], result: SeedResult) -> int:
    password_hash = staff_passwords.hash_password(DEMO_PASSWORD)
    specs = []
    for username, display_name, role, where in STAFF:
        org = orgs[OPERATOR[0] if where == "operator" else where]
        needs_mfa = role in MFA_REQUIRED_ROLES
        specs.append(
            StaffUserSpec(
                username=username,
                display_name=display_name,
                org_id=org.id,
                roles=(role,),
                mfa_secret=DEMO_TOTP_SECRET if needs_mfa else None,
            )
        )
        mfa_note = f", TOTP secret {DEMO_TOTP_SECRET}" if needs_mfa else ""
        result.logins.append(f"{username} ({role}, {org.name_en}{mfa_note})")
    iam.create_users_batch(uow, specs, password_hash=password_hash)
    return len(specs)


# -- catalog and number pool -----------------------------------------------------------


def _catalog(uow: UnitOfWork) -> int:
    catalog.create_offerings_batch(uow, [OfferingSpec(**spec) for spec in OFFERINGS])
    for reward in REWARDS:
        catalog.create_reward(uow, RewardSpec(**reward))
    return len(OFFERINGS)


def _number_pool(uow: UnitOfWork, orgs: dict[str, Any], plan: list[tuple[DemoCity, int]]) -> int:
    numbers.install_default_grades(uow)
    created = 0
    for city, blocks in people.pool_blocks(plan):
        for block in blocks:
            created += numbers.create_range(
                uow,
                org_path=orgs[city.code].path,
                kind="mobile",
                prefix=block,
                start="0000",
                end=f"{people.BLOCK_SIZE - 1:04d}",
                name=f"{city.name_en} {block}",
            ).size
    return created


# -- customers, accounts, lines --------------------------------------------------------


def _customer_batch(
    engine: Engine, orgs: dict[str, Any], batch: Sequence[people.DemoPerson], result: SeedResult
) -> None:
    """One committed unit of work: the batch's customers with their accounts, ledger
    accounts, lines, numbers and opening top-ups, each through its domain's batch API."""
    password_hash = _service_password_hash()
    halls = [orgs[person.hall_code] for person in batch]
    with UnitOfWork(engine) as uow:
        registered = customers.register_customers_batch(
            uow,
            [
                CustomerRegistration(
                    category=person.category,
                    name=person.name,
                    org_unit_id=hall.id,
                    org_path=hall.path,
                    id_number=person.id_number,
                    gender=person.gender,
                    credit_code=person.credit_code,
                    mobile=person.numbers[0],
                    address=person.address,
                    accounts=_account_specs(person.account_kind, person.credit_limit),
                    service_numbers=tuple(
                        ServiceNumberSpec(service_number=n, password_hash=password_hash)
                        for n in person.numbers
                    ),
                )
                for person, hall in zip(batch, halls, strict=True)
            ],
        )
        payments.ensure_customer_accounts(
            uow,
            [
                CustomerAccountSpec(
                    billing_account_id=reg.account_ids[0],
                    customer_id=reg.customer_id,
                    org_path=hall.path,
                )
                for reg, hall in zip(registered, halls, strict=True)
            ],
        )
        lines: list[NewSubscription] = []
        assignments: list[tuple[str, str, str]] = []  # (number, ID card index, customer)
        for reg, person, hall in zip(registered, batch, halls, strict=True):
            # A person's card index is the one the customers service stored with the
            # document; an organisation's lines are registered to its credit code.
            id_index = (
                reg.id_index
                if reg.id_index is not None
                else blind_index(person.document, customers.ID_PURPOSE)
            )
            for number, (plan_code, vas) in zip(person.numbers, person.lines, strict=True):
                lines.append(
                    NewSubscription(
                        service_number=number,
                        kind=LineKind.mobile,
                        customer_id=reg.customer_id,
                        billing_account_id=reg.account_ids[0],
                        org_path=hall.path,
                        plan_code=plan_code,
                        customer_category=person.category,
                        account_type=person.account_kind,
                        vas_codes=vas,
                        status=SubscriptionStatus.active,
                    )
                )
                assignments.append((number, id_index, reg.customer_id))
        line_ids = inventory.create_subscriptions_batch(uow, lines)
        numbers.assign_batch(
            uow,
            [
                numbers.AssignItem(
                    number=number,
                    holder="seed",
                    id_index=id_index,
                    customer_id=customer_id,
                    subscription_ref=line_id,
                )
                for (number, id_index, customer_id), line_id in zip(
                    assignments, line_ids, strict=True
                )
            ],
        )
        top_ups = [
            PaymentRequest(
                idempotency_key=f"seed:{reg.account_ids[0]}",
                channel="counter_cash",
                amount=person.top_up,
                billing_account_id=reg.account_ids[0],
                source_id=f"desk-{hall.code}-1",
                org_path=hall.path,
            )
            for reg, person, hall in zip(registered, batch, halls, strict=True)
            if person.top_up is not None
        ]
        outcomes = payments.record_payments(uow, top_ups)
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            raise RuntimeError(f"demo top-up refused: {failed[0].error}")
        uow.commit()
    result.customers += len(registered)
    result.accounts += len(registered)
    result.lines += len(lines)
    result.payments += len(top_ups)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the customer batches, as it was after.

    A batch holds a few hundred thousand live containers (rows, parameters, audit and
    outbox entries) until it commits, and the collector's allocation counters start a
    full collection every few hundred customers that walks all of them, to find almost
    nothing: the batches' objects are freed by reference counting. Those collections
    were about a third of the seed's CPU (BENCHMARKS.md, "Demo seed"). Whatever cycles
    the batches leave are collected once the collector is back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@functools.cache
def _account_specs(kind: str, credit_limit: int) -> tuple[AccountSpec]:
    """A customer's one billing account: specs are frozen, so customers with the same
    kind and limit share one (a handful of distinct ones, instead of one per customer)."""
    return (AccountSpec(kind=AccountKind(kind), credit_limit=credit_limit),)


@functools.cache
def _service_password_hash() -> str:
    """One argon2 hash of the demo service password, shared by every demo line."""
    return customers.hash_service_password(DEMO_SERVICE_PASSWORD)


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show,
    )
