"""The demo seed's fake people: pure data, no database, no settings.

``teleserve seed`` writes each batch through the services while the next batch is made
here, in a second process (``Prefetched``): making a person — a weighted surname, a
resident ID number with its check digit, an address, a plan, a number from the pool — is
a tenth of the seed's work, and on a two-core machine it need not wait for the writer.
Everything random comes from one ``random.Random(rng_seed)`` in this module, so the same
seed gives the same operator whether the people are made in-process or in the helper.
"""

from __future__ import annotations

import itertools
import json
import pickle
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, timedelta
from typing import NamedTuple, Protocol

from faker.providers.person.zh_CN import Provider as PersonProvider

from teleserve.customers.validation import credit_code_check_character, id_check_character
from teleserve.demo.data import CITIES, DemoCity
from teleserve.numbers import rules as number_rules

BLOCK_SIZE = 10_000  # a range is a whole block: its first 7 digits, then 0000-9999


class DemoPerson(NamedTuple):
    """One demo customer as the seed hands it to the services (a tuple: cheap to send
    between processes)."""

    city_code: str
    hall_code: str
    category: str  # individual | organisation
    name: str
    id_number: str | None
    gender: str | None
    credit_code: str | None
    address: str
    account_kind: str  # prepaid | postpaid
    credit_limit: int  # fen, postpaid only
    lines: tuple[tuple[str, tuple[str, ...]], ...]  # (plan code, VAS codes) per line
    numbers: tuple[str, ...]  # one pool number per line
    top_up: int | None  # an opening top-up at the counter, fen

    @property
    def document(self) -> str:
        """The ID card or credit code the person's numbers are registered to (一证五号)."""
        document = self.id_number if self.category == "individual" else self.credit_code
        assert document is not None
        return document


def customer_plan(total: int) -> list[tuple[DemoCity, int]]:
    """How many customers each city gets, by its weight (the last city takes the rest)."""
    weights = sum(city.weight for city in CITIES)
    plan, left = [], total
    for index, city in enumerate(CITIES):
        count = left if index == len(CITIES) - 1 else total * city.weight // weights
        plan.append((city, count))
        left -= count
    return plan


def pool_blocks(plan: Sequence[tuple[DemoCity, int]]) -> list[tuple[DemoCity, list[str]]]:
    """The number blocks each city gets for ``plan``. About a third of a block is
    ordinary-grade (the rest carry premium patterns such as 不含4 that ordinary customers
    do not get); lines are ~1.1 per customer."""
    return [
        (city, [city.block(i) for i in range(max(1, -(-int(count * 1.3) // 3_000)))])
        for city, count in plan
    ]


def batch_sizes(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


class PeopleMaker:
    """Makes the plan's people in order, batch after batch."""

    def __init__(self, plan: Sequence[tuple[DemoCity, int]], rng_seed: int) -> None:
        self._rng = random.Random(rng_seed)
        self._taken: set[str] = set()  # identity documents are unique per operator
        self._free = {city.code: self._ordinary_numbers(b) for city, b in pool_blocks(plan)}
        # The plan's cities, one entry per customer, in order.
        self._cities = itertools.chain.from_iterable(
            itertools.repeat(city, count) for city, count in plan
        )

    def _ordinary_numbers(self, blocks: Sequence[str]) -> list[str]:
        """The ordinary-grade numbers of ``blocks``, shuffled, last to be handed out first.
        The seed runs on an empty pool, so it needs no search per batch;
        ``numbers.assign_batch`` still checks every number it is given."""
        ranked = number_rules.rank(number_rules.DEFAULT_GRADES)
        values = [
            value
            for block in blocks
            for value in (f"{block}{suffix:04d}" for suffix in range(BLOCK_SIZE))
            if number_rules.best_grade(value, ranked).code == number_rules.ORDINARY_CODE
        ]
        self._rng.shuffle(values)
        return values

    def batch(self, count: int) -> list[DemoPerson]:
        return [self._person(city) for city in itertools.islice(self._cities, count)]

    def _take_numbers(self, city: DemoCity, count: int) -> tuple[str, ...]:
        free = self._free[city.code]
        if len(free) < count:
            raise RuntimeError(f"the demo number pool of {city.code} is exhausted")
        return tuple(free.pop() for _ in range(count))

    def _person(self, city: DemoCity) -> DemoPerson:
        rng = self._rng
        hall_code = rng.choice(city.halls)[0]
        district_code, district = rng.choice(city.districts)
        address = (
            f"{city.name_zh.removesuffix('分公司')}{district}{rng.choice(city.streets)}"
            f"{rng.randint(1, 999)}号{rng.randint(1, 30)}栋{rng.randint(101, 2808)}室"
        )
        if rng.random() < 0.08:  # an organisation (政企): a company with several lines
            lines: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
                ("MOB-ENT-99", ()) for _ in range(rng.randint(1, 3))
            )
            return DemoPerson(
                city_code=city.code,
                hall_code=hall_code,
                category="organisation",
                name=_company_name(city, rng),
                id_number=None,
                gender=None,
                credit_code=_unique(self._taken, lambda: _credit_code(district_code, rng)),
                address=address,
                account_kind="postpaid",
                credit_limit=rng.choice((50_000, 100_000, 200_000)),
                lines=lines,
                numbers=self._take_numbers(city, len(lines)),
                top_up=None,
            )
        gender = rng.choice(("male", "female"))
        id_number = _unique(self._taken, lambda: _resident_id(district_code, gender, rng))
        postpaid = rng.random() < 0.25
        plan = rng.choices(_PLAN_CODES, cum_weights=_PLAN_CUM_WEIGHTS)[0]
        vas = tuple(sorted(rng.sample(_VAS, rng.choice((0, 0, 1, 1, 2)))))
        if plan not in _DATA_PACK_PLANS:  # the data pack is sold with the smaller plans only
            vas = tuple(code for code in vas if code != "VAS-DATA10G")
        # Two in five prepaid customers topped up at their hall's counter (a few yuan to
        # two hundred, in the round amounts people pay).
        top_up = None
        if not postpaid and rng.random() < 0.4:
            top_up = rng.choice((1000, 2000, 3000, 5000, 10000, 20000))
        return DemoPerson(
            city_code=city.code,
            hall_code=hall_code,
            category="individual",
            name=_person_name(gender, rng),
            id_number=id_number,
            gender=gender,
            credit_code=None,
            address=address,
            account_kind="postpaid" if postpaid else "prepaid",
            credit_limit=20_000 if postpaid else 0,
            lines=((plan, vas),),
            numbers=self._take_numbers(city, 1),
            top_up=top_up,
        )


class Batches(Protocol):
    """The plan's people in batches, in order; ``close`` releases whatever makes them."""

    def __iter__(self) -> Iterator[list[DemoPerson]]: ...

    def close(self) -> None: ...


class MadeHere:
    """The plan's people in batches of ``size``, made in this process as they are read."""

    def __init__(self, plan: Sequence[tuple[DemoCity, int]], rng_seed: int, size: int) -> None:
        self._plan, self._rng_seed, self._size = list(plan), rng_seed, size

    def __iter__(self) -> Iterator[list[DemoPerson]]:
        maker = PeopleMaker(self._plan, self._rng_seed)
        for count in batch_sizes(sum(count for _city, count in self._plan), self._size):
            yield maker.batch(count)

    def close(self) -> None:
        pass


class Prefetched:
    """``MadeHere``'s batches, made in a helper process one batch ahead of the reader.

    The helper is a fresh interpreter running this module (``python -m``), not a fork: a
    forked copy of a process holding database connections and, under ``teleserve demo``,
    threads is unsafe, and ``multiprocessing``'s spawn would re-run the caller's main
    script. It writes each batch as a pickle to its stdout and makes the next one while
    the pipe is full; it starts at once, so its start-up overlaps the seed's set-up.
    """

    def __init__(self, plan: Sequence[tuple[DemoCity, int]], rng_seed: int, size: int) -> None:
        self._sizes = batch_sizes(sum(count for _city, count in plan), size)
        request = json.dumps([[[city.code, count] for city, count in plan], rng_seed, size])
        self._helper = subprocess.Popen(  # noqa: S603 (our own module, no shell, no input)
            [sys.executable, "-m", __name__, request], stdout=subprocess.PIPE
        )

    def __iter__(self) -> Iterator[list[DemoPerson]]:
        stream = self._helper.stdout
        assert stream is not None
        for _size in self._sizes:
            try:
                people: list[DemoPerson] = pickle.load(stream)  # noqa: S301 (our own helper)
            except EOFError:
                code = self._helper.wait()
                raise RuntimeError(f"the demo data helper stopped (exit code {code})") from None
            yield people

    def close(self) -> None:
        """Stop the helper (it is done already unless the seed stopped half-way)."""
        if self._helper.poll() is None:
            self._helper.kill()
        self._helper.wait()
        if self._helper.stdout is not None:
            self._helper.stdout.close()


def _helper_main(request: str) -> None:
    """The helper process: every batch of the request, pickled, to stdout."""
    cities = {city.code: city for city in CITIES}
    raw_plan, rng_seed, size = json.loads(request)
    plan = [(cities[code], int(count)) for code, count in raw_plan]
    out = sys.stdout.buffer
    for people in MadeHere(plan, int(rng_seed), int(size)):
        pickle.dump(people, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


_PLANS_PERSON = (("MOB-58", 30), ("MOB-88", 30), ("MOB-128", 20), ("MOB-188", 8), ("MOB-38", 12))
_PLAN_CODES = [code for code, _ in _PLANS_PERSON]
_PLAN_CUM_WEIGHTS = list(itertools.accumulate(weight for _, weight in _PLANS_PERSON))
_VAS = ("VAS-CLIP", "VAS-RBT", "VAS-DATA10G")
_DATA_PACK_PLANS = frozenset({"MOB-38", "MOB-58", "MOB-88"})


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


if __name__ == "__main__":
    # Run as the module's real name, so the pickles name ``teleserve.demo.people``'s
    # classes, not ``__main__``'s.
    from teleserve.demo.people import _helper_main as helper_main

    helper_main(sys.argv[1])
