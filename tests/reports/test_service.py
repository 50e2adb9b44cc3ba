"""The dashboard's aggregates (reports.service and the domains' aggregate functions) on
the demo operator: every figure equals what the records say, known changes move exactly
the figures they should, scoping and permissions hold, and an empty operator gives empty
charts. Both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.clock import FrozenClock
from teleserve.core.errors import NotFound, PermissionDenied
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.demo.seed import seed_database
from teleserve.iam import service as iam
from teleserve.inventory import service as inventory
from teleserve.numbers import service as numbers
from teleserve.payments import service as payments
from teleserve.payments.schemas import PaymentRequest
from teleserve.reports import service as reports
from tests.tmf_support import ORG_SPECS

READS = frozenset({"reports.read", "iam.orgs.read", "catalog.read"})
OPERATOR = Actor(ActorKind.staff, "boss", "/TS/", READS, "boss")
GUANGZHOU = Actor(ActorKind.staff, "gz-boss", "/TS/GD/GZ/", READS, "gz-boss")
NO_REPORTS = Actor(ActorKind.staff, "agent", "/TS/", READS - {"reports.read"}, "agent")
# Some bars are placed and lifted by staff only (never the system): an all-powerful clerk.
CLERK = Actor(ActorKind.staff, "clerk", "/", frozenset({"*"}), "clerk")


@pytest.fixture
def demo(engine: Engine, frozen_clock: FrozenClock) -> Engine:
    seed_database(engine, customers=12, progress=False)
    return engine


def _rows(engine: Engine, sql: str, **params: object) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def _city(path: str) -> str:
    return path.split("/")[3]  # /TS/GD/<city>/...


def _as_dict(chart: reports.Chart, series: int = 0) -> dict[str, int]:
    return {c.key: chart.series[series].values[i] for i, c in enumerate(chart.categories)}


def _charts(engine: Engine, actor: Actor, locale: str = "zh-CN") -> dict[str, reports.Chart]:
    with UnitOfWork(engine, actor, locale=locale, readonly=True) as uow:
        return {chart.key: chart for chart in reports.dashboard(uow)}


def test_every_figure_equals_the_records(demo):
    charts = _charts(demo, OPERATOR)
    expected: dict[str, int] = {}
    for (path,) in _rows(demo, "SELECT org_path FROM cust_customer WHERE status = 'active'"):
        expected[_city(path)] = expected.get(_city(path), 0) + 1
    assert _as_dict(charts["customers_by_unit"]) == expected
    assert [c.label for c in charts["customers_by_unit"].categories] == [
        "佛山市分公司",
        "广州市分公司",
        "深圳市分公司",
    ]
    plans = dict(
        _rows(
            demo,
            "SELECT plan_code, count(*) FROM inventory_subscription"
            " WHERE status <> 'terminated' GROUP BY plan_code",
        )
    )
    assert _as_dict(charts["lines_by_plan"]) == plans
    values = charts["lines_by_plan"].series[0].values
    assert list(values) == sorted(values, reverse=True)  # biggest first
    assert all(c.label != c.key for c in charts["lines_by_plan"].categories)  # plan names
    pool: dict[tuple[str, str], int] = {}
    for path, status, count in _rows(
        demo, "SELECT org_path, status, count(*) FROM pool_number GROUP BY org_path, status"
    ):
        key = (_city(path), status)
        pool[key] = pool.get(key, 0) + count
    chart = charts["pool_by_region"]
    got = {
        (c.key, s.key): s.values[i]
        for s in chart.series
        for i, c in enumerate(chart.categories)
        if s.values[i]
    }
    assert got == pool
    # the seed's opening top-ups: counter cash, all on the frozen day (the last category)
    [(paid,)] = _rows(demo, "SELECT sum(amount) FROM payment WHERE status = 'completed'")
    payments_chart = charts["payments_by_day"]
    assert [s.key for s in payments_chart.series] == ["counter_cash"]
    assert payments_chart.categories[-1].key == "2026-11-25"
    assert payments_chart.series[0].values[-1] == paid and payments_chart.total == paid
    assert charts["open_bars"].empty and not charts["lines_by_plan"].empty
    assert [c.key for c in charts["open_bars"].categories] == [
        "credit",
        "lost",
        "keep_number",
        "admin",
        "fraud",
    ]


def test_known_changes_move_exactly_their_figures(demo, frozen_clock):
    lines = _rows(
        demo,
        "SELECT id, plan_code, billing_account_id, org_path FROM inventory_subscription"
        " WHERE org_path LIKE '/TS/GD/GZ/%' ORDER BY service_number",
    )
    before = _charts(demo, OPERATOR)
    with UnitOfWork(demo, CLERK) as uow:
        inventory.add_bar(uow, lines[0][0], "fraud", "test")
        inventory.add_bar(uow, lines[1][0], "admin", "test")
        inventory.add_bar(uow, lines[1][0], "lost", "test")
        inventory.lift_bar(uow, lines[1][0], "lost", "found")
        inventory.terminate(uow, lines[2][0], "test")
        free = numbers.search_free(uow, "/TS/GD/SZ/", limit=1)[0]
        numbers.reserve(uow, free.value, "holder-1", minutes=60)
        account = lines[0][2]
        today = [
            PaymentRequest(f"t:{n}", channel, amount, billing_account_id=account, **extra)
            for n, (channel, amount, extra) in enumerate(
                [
                    ("web", 1234, {}),
                    ("counter_cash", 500, {"source_id": "desk-1"}),
                    ("web", 999, {}),  # reversed below: not counted
                ]
            )
        ]
        outcomes = payments.record_payments(uow, today)
        payments.reverse_payment(uow, outcomes[2].payment_id, "mistake")
        uow.commit()
    for days, key in ((3, "d3"), (30, "d30")):  # 30 days ago: outside the chart
        frozen_clock.advance(days=-days)
        with UnitOfWork(demo) as uow:
            payments.record_payments(
                uow, [PaymentRequest(key, "web", 700, billing_account_id=account)]
            )
            uow.commit()
        frozen_clock.advance(days=days)
    after = _charts(demo, OPERATOR)
    assert _as_dict(after["open_bars"]) == {
        "credit": 0,
        "lost": 0,
        "keep_number": 0,
        "admin": 1,
        "fraud": 1,
    }
    plans_before, plans_after = _as_dict(before["lines_by_plan"]), _as_dict(after["lines_by_plan"])
    terminated_plan = lines[2][1]
    assert plans_after.get(terminated_plan, 0) == plans_before[terminated_plan] - 1
    assert sum(plans_after.values()) == sum(plans_before.values()) - 1
    pay = after["payments_by_day"]
    by_channel = {s.key: s.values for s in pay.series}
    assert list(by_channel) == ["counter_cash", "web"]  # the chart's channel order
    assert by_channel["web"][-1] == 1234 and by_channel["web"][-4] == 700
    assert sum(by_channel["web"]) == 1234 + 700  # the reversal and the old one left out
    assert by_channel["counter_cash"][-1] == before["payments_by_day"].total + 500
    pool = {
        s.key: dict(zip([c.key for c in after["pool_by_region"].categories], s.values, strict=True))
        for s in after["pool_by_region"].series
    }
    assert pool["reserved"] == {"FS": 0, "GZ": 0, "SZ": 1}
    # a lapsed reservation counts as free again
    frozen_clock.advance(minutes=61)
    lapsed = _charts(demo, OPERATOR)["pool_by_region"]
    assert sum(next(s for s in lapsed.series if s.key == "reserved").values) == 0
    assert lapsed.total == after["pool_by_region"].total


def test_a_city_sees_its_halls_and_nothing_else(demo):
    charts = _charts(demo, GUANGZHOU, locale="en")
    expected: dict[str, int] = {}
    for (path,) in _rows(
        demo, "SELECT org_path FROM cust_customer WHERE org_path LIKE '/TS/GD/GZ/%'"
    ):
        hall = path.split("/")[4]
        expected[hall] = expected.get(hall, 0) + 1
    by_hall = charts["customers_by_unit"]
    assert by_hall.title == "Customers by hall"
    assert {k: v for k, v in _as_dict(by_hall).items() if v} == expected
    assert [c.label for c in by_hall.categories] == ["Tianhe Hall", "Yuexiu Hall", "Panyu Hall"]
    assert [c.key for c in charts["pool_by_region"].categories] == ["GZ"]
    [(lines,)] = _rows(
        demo,
        "SELECT count(*) FROM inventory_subscription WHERE org_path LIKE '/TS/GD/GZ/%'",
    )
    assert charts["lines_by_plan"].total == lines
    [(paid,)] = _rows(demo, "SELECT sum(amount) FROM payment WHERE org_path LIKE '/TS/GD/GZ/%'")
    assert charts["payments_by_day"].total == paid


def test_reports_read_is_required_everywhere(demo):
    with UnitOfWork(demo, NO_REPORTS, readonly=True) as uow:
        for call in (
            reports.dashboard,
            customers.count_by_org_path,
            inventory.count_lines_by_plan,
            inventory.count_open_bars,
            numbers.count_by_org_path_and_status,
            lambda u: payments.daily_totals(u, *reports.payment_days()),
            lambda u: reports.chart(u, "open_bars"),
        ):
            with pytest.raises(PermissionDenied):
                call(uow)
    with UnitOfWork(demo, OPERATOR, readonly=True) as uow, pytest.raises(NotFound):
        reports.chart(uow, "nothing")


def test_an_operator_without_data_has_empty_charts(engine, frozen_clock):
    with UnitOfWork(engine, SYSTEM) as uow:
        iam.create_org_units_batch(uow, list(ORG_SPECS))
        uow.commit()
    charts = _charts(engine, Actor(ActorKind.staff, "x", "/TS/", READS, "x"))
    assert all(chart.empty for chart in charts.values())
    assert charts["customers_by_unit"].categories[0].label == "广州"  # cities, at zero
    assert (
        charts["payments_by_day"].series == () and len(charts["payments_by_day"].categories) == 30
    )
    first, last = reports.payment_days()
    assert last - first == timedelta(days=29)
