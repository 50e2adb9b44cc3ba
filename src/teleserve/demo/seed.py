"""``teleserve seed``: a realistic demo operator built through the services' batch APIs.

Everything goes through the owning domain's service functions — the same write paths the
console and the APIs use — in batches: the organisation tree and staff (iam), the
business calendar, the catalog, the number pool (numbers), customers with identity
documents, accounts and service passwords (customers), ledger accounts and opening
top-ups (payments), lines (inventory) and number assignment under the real-name rule.

Expensive hashes are computed once: every demo staff member shares one argon2 hash of
``DEMO_PASSWORD``, every line one hash of ``DEMO_SERVICE_PASSWORD``.
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from faker.providers.person.zh_CN import Provider as PersonProvider
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from teleserve.catalog import service as catalog
from teleserve.catalog.schemas import OfferingSpec, RewardSpec
from teleserve.core.calendar import seed_default_calendar
from teleserve.core.crypto import blind_index
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.customers.schemas import AccountSpec, CustomerRegistration, ServiceNumberSpec
from teleserve.customers.validation import credit_code_check_character, id_check_character
from teleserve.demo.catalog import OFFERINGS, REWARDS
from teleserve.demo.data import CITIES, OPERATOR, PROVINCE, STAFF, DemoCity
from teleserve.iam import passwords as staff_passwords
from teleserve.iam import service as iam
from teleserve.iam.roles import MFA_REQUIRED_ROLES
from teleserve.iam.schemas import OrgUnitSpec, StaffUserSpec
from teleserve.inventory import service as inventory
from teleserve.inventory.schemas import LineKind, NewSubscription, SubscriptionStatus
from teleserve.numbers import rules as number_rules
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
    rng = random.Random(rng_seed)
    result = SeedResult()
    with UnitOfWork(engine) as uow:
        orgs = _organisation(uow)
        result.staff = _staff(uow, orgs, result)
        seed_default_calendar(uow.connection)
        result.offerings = _catalog(uow)
        uow.commit()
    plan = _customer_plan(customers, rng)
    pool = _OrdinaryNumbers(rng)
    with UnitOfWork(engine) as uow:
        result.numbers_in_pool = _number_pool(uow, orgs, plan, pool)
        uow.commit()
    taken_ids: set[str] = set()  # identity documents are unique per operator
    customer_started = time.perf_counter()
    with _progress(progress) as bar:
        task = bar.add_task("customers", total=customers)
        for city, count in plan:
            for chunk in _chunks(count, BATCH):
                _customer_batch(engine, orgs, city, chunk, rng, pool, taken_ids, result)
                bar.advance(task, chunk)
    result.customer_seconds = time.perf_counter() - customer_started
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


def _customer_plan(total: int, rng: random.Random) -> list[tuple[DemoCity, int]]:
    weights = sum(city.weight for city in CITIES)
    plan, left = [], total
    for index, city in enumerate(CITIES):
        count = left if index == len(CITIES) - 1 else total * city.weight // weights
        plan.append((city, count))
        left -= count
    return plan


def _number_pool(
    uow: UnitOfWork,
    orgs: dict[str, Any],
    plan: list[tuple[DemoCity, int]],
    pool: _OrdinaryNumbers,
) -> int:
    numbers.install_default_grades(uow)
    created = 0
    for city, count in plan:
        # About a third of a block is ordinary-grade (the rest carry premium patterns such
        # as 不含4 that ordinary customers do not get); lines are ~1.1 per customer.
        blocks_needed = max(1, -(-int(count * 1.3) // 3_000))
        for index in range(blocks_needed):
            block = city.block(index)
            created += numbers.create_range(
                uow,
                org_path=orgs[city.code].path,
                kind="mobile",
                prefix=block,
                start="0000",
                end="9999",
                name=f"{city.name_en} {block}",
            ).size
            pool.add_range(orgs[city.code].path, block)
    return created


# -- customers, accounts, lines --------------------------------------------------------


class _OrdinaryNumbers:
    """The ordinary-grade numbers of the ranges this seed created, per region, handed out
    in a shuffled order. The seed runs on an empty pool, so it needs no search per batch;
    ``numbers.assign_batch`` still checks every number it is given."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._free: dict[str, list[str]] = {}

    def add_range(self, org_path: str, prefix: str) -> None:
        ranked = number_rules.rank(number_rules.DEFAULT_GRADES)
        values = [
            f"{prefix}{suffix:04d}"
            for suffix in range(10_000)
            if number_rules.best_grade(f"{prefix}{suffix:04d}", ranked).code
            == number_rules.ORDINARY_CODE
        ]
        self._rng.shuffle(values)
        self._free.setdefault(org_path, []).extend(values)

    def take(self, org_path: str, count: int) -> list[str]:
        free = self._free.get(org_path, [])
        if len(free) < count:
            raise RuntimeError(f"the demo number pool of {org_path} is exhausted")
        taken, self._free[org_path] = free[:count], free[count:]
        return taken


def _customer_batch(
    engine: Engine,
    orgs: dict[str, Any],
    city: DemoCity,
    count: int,
    rng: random.Random,
    pool: _OrdinaryNumbers,
    taken_ids: set[str],
    result: SeedResult,
) -> None:
    city_org = orgs[city.code]
    password_hash = _service_password_hash()
    with UnitOfWork(engine) as uow:
        people = [_person(city, orgs, rng, taken_ids) for _ in range(count)]
        registrations = []
        for person in people:
            person_numbers = pool.take(city_org.path, len(person["lines"]))
            person["numbers"] = person_numbers
            registrations.append(
                CustomerRegistration(
                    category=person["category"],
                    name=person["name"],
                    org_unit_id=person["org"].id,
                    org_path=person["org"].path,
                    id_number=person.get("id_number"),
                    gender=person.get("gender"),
                    credit_code=person.get("credit_code"),
                    mobile=person_numbers[0],
                    address=person["address"],
                    accounts=(AccountSpec(kind=person["account_kind"], **person["credit"]),),
                    service_numbers=tuple(
                        ServiceNumberSpec(service_number=n, password_hash=password_hash)
                        for n in person_numbers
                    ),
                )
            )
        registered = customers.register_customers_batch(uow, registrations)
        payments.ensure_customer_accounts(
            uow,
            [
                CustomerAccountSpec(
                    billing_account_id=r.account_ids[0],
                    customer_id=r.customer_id,
                    org_path=p["org"].path,
                )
                for r, p in zip(registered, people, strict=True)
            ],
        )
        lines: list[NewSubscription] = []
        assignments: list[numbers.AssignItem] = []
        for reg, person in zip(registered, people, strict=True):
            for number, (plan_code, vas) in zip(person["numbers"], person["lines"], strict=True):
                lines.append(
                    NewSubscription(
                        service_number=number,
                        kind=LineKind.mobile,
                        customer_id=reg.customer_id,
                        billing_account_id=reg.account_ids[0],
                        org_path=person["org"].path,
                        plan_code=plan_code,
                        customer_category=person["category"],
                        account_type=person["account_kind"],
                        vas_codes=vas,
                        status=SubscriptionStatus.active,
                    )
                )
                assignments.append(
                    numbers.AssignItem(
                        number=number,
                        holder="seed",
                        id_index=person["id_index"],
                        customer_id=reg.customer_id,
                    )
                )
        line_ids = inventory.create_subscriptions_batch(uow, lines)
        numbers.assign_batch(
            uow,
            [
                numbers.AssignItem(
                    number=item.number,
                    holder=item.holder,
                    id_index=item.id_index,
                    customer_id=item.customer_id,
                    subscription_ref=line_id,
                )
                for item, line_id in zip(assignments, line_ids, strict=True)
            ],
        )
        top_ups = _opening_top_ups(registered, people, rng)
        outcomes = payments.record_payments(uow, top_ups)
        failed = [o for o in outcomes if o.error is not None]
        if failed:
            raise RuntimeError(f"demo top-up refused: {failed[0].error}")
        uow.commit()
    result.customers += len(registered)
    result.accounts += len(registered)
    result.lines += len(lines)
    result.payments += len(top_ups)


def _opening_top_ups(
    registered: Sequence[Any], people: Sequence[dict[str, Any]], rng: random.Random
) -> list[PaymentRequest]:
    """Two in five prepaid customers topped up at their hall's counter (a few yuan to
    two hundred, in the round amounts people pay)."""
    requests = []
    for reg, person in zip(registered, people, strict=True):
        if person["account_kind"] != "prepaid" or rng.random() > 0.4:
            continue
        requests.append(
            PaymentRequest(
                idempotency_key=f"seed:{reg.account_ids[0]}",
                channel="counter_cash",
                amount=rng.choice((1000, 2000, 3000, 5000, 10000, 20000)),
                billing_account_id=reg.account_ids[0],
                source_id=f"desk-{person['org'].code}-1",
                org_path=person["org"].path,
            )
        )
    return requests


_PLANS_PERSON = (("MOB-58", 30), ("MOB-88", 30), ("MOB-128", 20), ("MOB-188", 8), ("MOB-38", 12))
_VAS = ("VAS-CLIP", "VAS-RBT", "VAS-DATA10G")
_DATA_PACK_PLANS = frozenset({"MOB-38", "MOB-58", "MOB-88"})


def _person(
    city: DemoCity, orgs: dict[str, Any], rng: random.Random, taken: set[str]
) -> dict[str, Any]:
    hall_code = rng.choice(city.halls)[0]
    district_code, district = rng.choice(city.districts)
    address = (
        f"{city.name_zh.removesuffix('分公司')}{district}{rng.choice(city.streets)}"
        f"{rng.randint(1, 999)}号{rng.randint(1, 30)}栋{rng.randint(101, 2808)}室"
    )
    plan_codes = [code for code, _ in _PLANS_PERSON]
    weights = [w for _, w in _PLANS_PERSON]
    if rng.random() < 0.08:  # an organisation (政企): a company with several lines
        name = _company_name(city, rng)
        credit_code = _unique(taken, lambda: _credit_code(district_code, rng))
        return {
            "category": "organisation",
            "name": name,
            "credit_code": credit_code,
            "id_index": blind_index(credit_code, "id_number"),
            "org": orgs[hall_code],
            "address": address,
            "account_kind": "postpaid",
            "credit": {"credit_limit": rng.choice((50_000, 100_000, 200_000))},
            "lines": [("MOB-ENT-99", ()) for _ in range(rng.randint(1, 3))],
        }
    gender = rng.choice(("male", "female"))
    id_number = _unique(taken, lambda: _resident_id(district_code, gender, rng))
    postpaid = rng.random() < 0.25
    plan = rng.choices(plan_codes, weights)[0]
    vas = tuple(sorted(rng.sample(_VAS, rng.choice((0, 0, 1, 1, 2)))))
    if plan not in _DATA_PACK_PLANS:  # the data pack is sold with the smaller plans only
        vas = tuple(code for code in vas if code != "VAS-DATA10G")
    return {
        "category": "individual",
        "name": _person_name(gender, rng),
        "id_number": id_number,
        "gender": gender,
        "id_index": blind_index(id_number, "id_number"),
        "org": orgs[hall_code],
        "address": address,
        "account_kind": "postpaid" if postpaid else "prepaid",
        "credit": {"credit_limit": 20_000} if postpaid else {},
        "lines": [(plan, vas)],
    }


def _unique(taken: set[str], make: Callable[[], str]) -> str:
    while (value := make()) in taken:
        pass
    taken.add(value)
    return value


def _resident_id(district_code: str, gender: str, rng: random.Random) -> str:
    born = date(1950, 1, 1) + timedelta(days=rng.randint(0, 365 * 56))
    sequence = rng.randint(0, 99) * 10 + rng.choice(
        (1, 3, 5, 7, 9) if gender == "male" else (0, 2, 4, 6, 8)
    )
    first17 = f"{district_code}{born:%Y%m%d}{sequence:03d}"
    return first17 + id_check_character(first17)


_CREDIT_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _credit_code(district_code: str, rng: random.Random) -> str:
    # 91 = enterprise registered with the market regulator; then the district, then the
    # nine-character organisation code (its own check character is not validated by the
    # GB 32100 check over the whole code, which is what the customers domain verifies).
    body = "".join(rng.choice(_CREDIT_CHARS[:10]) for _ in range(8))
    first17 = f"91{district_code}{body}{rng.choice('0123456789')}"
    return first17 + credit_code_check_character(first17)


# Surnames weighted by their frequency, and given names, from Faker's zh_CN data (drawing
# from the lists directly is ~20× cheaper than Faker's formatter per name).
_SURNAMES = list(PersonProvider.last_names)
# Cumulative weights, computed once: random.choices would rebuild them on every call.
_SURNAME_CUM_WEIGHTS = list(itertools.accumulate(PersonProvider.last_names.values()))
_COMPANY_WORDS = ("科技", "贸易", "物流", "电子", "建设", "餐饮", "医疗", "教育", "制造", "传媒")
_COMPANY_NAMES = ("华信", "鸿运", "恒通", "新源", "鼎盛", "嘉禾", "瑞丰", "天成", "宏图", "汇智")


def _person_name(gender: str, rng: random.Random) -> str:
    given = (
        PersonProvider.first_names_male if gender == "male" else PersonProvider.first_names_female
    )
    surname = rng.choices(_SURNAMES, cum_weights=_SURNAME_CUM_WEIGHTS)[0]
    name = surname + rng.choice(given)
    if len(name) == 2 and rng.random() < 0.5:
        name += rng.choice(given)[0]
    return name


def _company_name(city: DemoCity, rng: random.Random) -> str:
    place = city.name_zh.removesuffix("市分公司")
    return f"{place}{rng.choice(_COMPANY_NAMES)}{rng.choice(_COMPANY_WORDS)}有限公司"


@functools.cache
def _service_password_hash() -> str:
    """One argon2 hash of the demo service password, shared by every demo line."""
    return customers.hash_service_password(DEMO_SERVICE_PASSWORD)


def _chunks(total: int, size: int) -> Iterator[int]:
    while total > 0:
        yield min(size, total)
        total -= size


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show,
    )
