"""The dashboard's figures: aggregates of the actor's subtree, read through the domains'
service functions (DESIGN.md: ``reports`` owns no table of its own yet).

Each chart is a list of categories (org units, plans, bar types, days...) and one or more
series of whole numbers (counts, or amounts in fen), labelled in the unit of work's
language: the console shows them with ECharts and exports the same rows. Every function
needs ``reports.read``; the domains' aggregate functions check it too and scope their
queries to the actor's subtree, so another organisation's records never count.

Grouping by organisation: an actor who sees several cities gets one bar per city; one
inside a city gets one bar per hall. A record filed directly under a unit above that
level (a customer of the city itself) gets a bar of its own unit, so nothing is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from teleserve.catalog import service as catalog
from teleserve.core.clock import business_date, utcnow
from teleserve.core.errors import NotFound, PermissionDenied
from teleserve.core.i18n import _, translate
from teleserve.core.settings import get_settings
from teleserve.core.uow import UnitOfWork
from teleserve.customers import service as customers
from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgLevel, OrgUnitOut
from teleserve.inventory import service as inventory
from teleserve.numbers import service as numbers
from teleserve.payments import service as payments

READ = "reports.read"
PAYMENT_DAYS = 30

# Codes shown as categories or series, with their message ids.
BAR_LABELS = {
    "credit": _("Arrears"),
    "lost": _("Reported lost"),
    "keep_number": _("Keep number"),
    "admin": _("Administrative"),
    "fraud": _("Fraud suspicion"),
}
CHANNEL_LABELS = {
    "kiosk_cash": _("Kiosk (cash)"),
    "kiosk_card": _("Kiosk (card)"),
    "counter_cash": _("Counter (cash)"),
    "web": _("Web"),
    "api": _("API"),
}
POOL_STATUS_LABELS = {
    "free": _("Free"),
    "reserved": _("Reserved"),
    "assigned": _("Assigned"),
    "quarantine": _("Quarantine"),
}


@dataclass(frozen=True)
class Category:
    key: str  # a stable code: org code, plan code, bar type, ISO date
    label: str  # in the unit of work's language


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    values: tuple[int, ...]  # one per category


@dataclass(frozen=True)
class Chart:
    key: str
    title: str  # in the unit of work's language
    kind: str  # "bar", "pie" or "stacked_bar"
    money: bool  # values are fen (shown and exported in yuan)
    category_title: str
    categories: tuple[Category, ...]
    series: tuple[Series, ...]

    @property
    def empty(self) -> bool:
        """Nothing to draw: no category, or every value zero."""
        return not any(value for series in self.series for value in series.values)

    @property
    def total(self) -> int:
        return sum(sum(series.values) for series in self.series)


CHARTS = ("customers_by_unit", "lines_by_plan", "open_bars", "payments_by_day", "pool_by_region")


# -- organisation units ----------------------------------------------------------------


@dataclass(frozen=True)
class _Units:
    """The org units the actor sees, for naming and grouping records by path."""

    by_path: Mapping[str, OrgUnitOut]
    locale: str

    def name(self, path: str) -> str:
        unit = self.by_path.get(path)
        if unit is None:  # not readable (no iam.orgs.read): the unit's code
            return path.rstrip("/").rsplit("/", 1)[-1] or path
        return unit.name_en if self.locale == "en" else unit.name_zh

    def code(self, path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[-1] or path

    def at_level(self, level: OrgLevel) -> list[str]:
        return sorted(p for p, unit in self.by_path.items() if unit.level is level)

    def group_of(self, path: str, targets: Iterable[str]) -> str:
        """The target unit holding ``path``; otherwise ``path``'s own unit."""
        for target in targets:
            if path.startswith(target):
                return target
        return path


def _units(uow: UnitOfWork) -> _Units:
    try:
        units = iam.list_org_units(uow)
    except PermissionDenied:
        units = []
    return _Units({unit.path: unit for unit in units}, uow.locale)


def _by_unit(units: _Units, counts: Mapping[str, int], targets: list[str]) -> dict[str, int]:
    grouped: dict[str, int] = dict.fromkeys(targets, 0)
    for path, count in counts.items():
        key = units.group_of(path, targets)
        grouped[key] = grouped.get(key, 0) + count
    return grouped


def _grouping(units: _Units) -> tuple[OrgLevel, list[str]]:
    """Cities when the actor sees several, else halls (see the module docstring)."""
    cities = units.at_level(OrgLevel.city)
    if len(cities) > 1:
        return OrgLevel.city, cities
    return OrgLevel.hall, units.at_level(OrgLevel.hall)


def _t(uow: UnitOfWork, message: str) -> str:
    return translate(message, uow.locale)


# -- the charts ------------------------------------------------------------------------


def customers_by_unit(uow: UnitOfWork, units: _Units | None = None) -> Chart:
    uow.actor.require(READ)
    units = units or _units(uow)
    level, targets = _grouping(units)
    grouped = _by_unit(units, customers.count_by_org_path(uow), targets)
    paths = sorted(grouped)
    return Chart(
        key="customers_by_unit",
        title=_t(uow, _("Customers by city") if level is OrgLevel.city else _("Customers by hall")),
        kind="bar",
        money=False,
        category_title=_t(uow, _("City") if level is OrgLevel.city else _("Hall")),
        categories=tuple(Category(units.code(p), units.name(p)) for p in paths),
        series=(Series("customers", _t(uow, _("Customers")), tuple(grouped[p] for p in paths)),),
    )


def _offering_names(uow: UnitOfWork) -> dict[str, str]:
    try:
        offerings = catalog.list_offerings(uow)
    except PermissionDenied:
        return {}
    return {o.code: (o.name_en if uow.locale == "en" else o.name_zh) for o in offerings}


def lines_by_plan(uow: UnitOfWork) -> Chart:
    uow.actor.require(READ)
    counts = inventory.count_lines_by_plan(uow)
    names = _offering_names(uow) if counts else {}
    # Biggest first: a pie reads best that way, and so does the exported table.
    codes = sorted(counts, key=lambda code: (-counts[code], code))
    return Chart(
        key="lines_by_plan",
        title=_t(uow, _("Lines by plan")),
        kind="pie",
        money=False,
        category_title=_t(uow, _("Plan")),
        categories=tuple(Category(code, names.get(code, code)) for code in codes),
        series=(Series("lines", _t(uow, _("Lines")), tuple(counts[c] for c in codes)),),
    )


def open_bars(uow: UnitOfWork) -> Chart:
    uow.actor.require(READ)
    counts = inventory.count_open_bars(uow)
    # Every bar type, even at zero, so the chart shows what is *not* happening too.
    bars = list(BAR_LABELS) + sorted(set(counts) - set(BAR_LABELS))
    return Chart(
        key="open_bars",
        title=_t(uow, _("Lines with open bars, by bar type")),
        kind="bar",
        money=False,
        category_title=_t(uow, _("Bar type")),
        categories=tuple(Category(b, _t(uow, BAR_LABELS.get(b, b))) for b in bars),
        series=(Series("lines", _t(uow, _("Lines")), tuple(counts.get(b, 0) for b in bars)),),
    )


def payment_days(today: date | None = None) -> tuple[date, date]:
    """The first and last business dates of the payments chart (the last 30 days)."""
    last = today or business_date(utcnow(), get_settings().timezone)
    return last - timedelta(days=PAYMENT_DAYS - 1), last


def payments_by_day(uow: UnitOfWork) -> Chart:
    uow.actor.require(READ)
    first, last = payment_days()
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    amounts: dict[str, dict[date, int]] = {}
    for row in payments.daily_totals(uow, first, last):
        amounts.setdefault(row.channel, {})[row.business_date] = row.amount
    channels = [c for c in CHANNEL_LABELS if c in amounts] + sorted(
        set(amounts) - set(CHANNEL_LABELS)
    )
    return Chart(
        key="payments_by_day",
        title=_t(uow, _("Payments per day, last 30 days (yuan)")),
        kind="stacked_bar",
        money=True,
        category_title=_t(uow, _("Business date")),
        categories=tuple(Category(d.isoformat(), d.strftime("%m-%d")) for d in days),
        series=tuple(
            Series(
                channel,
                _t(uow, CHANNEL_LABELS.get(channel, channel)),
                tuple(amounts[channel].get(d, 0) for d in days),
            )
            for channel in channels
        ),
    )


def pool_by_region(uow: UnitOfWork, units: _Units | None = None) -> Chart:
    uow.actor.require(READ)
    units = units or _units(uow)
    counts = numbers.count_by_org_path_and_status(uow)
    cities = units.at_level(OrgLevel.city)
    grouped: dict[str, dict[str, int]] = {}
    for (path, status), count in counts.items():
        region = units.group_of(path, cities)
        by_status = grouped.setdefault(region, {})
        by_status[status.value] = by_status.get(status.value, 0) + count
    regions = sorted(grouped)
    return Chart(
        key="pool_by_region",
        title=_t(uow, _("Number pool by status and region")),
        kind="stacked_bar",
        money=False,
        category_title=_t(uow, _("Region")),
        categories=tuple(Category(units.code(p), units.name(p)) for p in regions),
        series=tuple(
            Series(
                status,
                _t(uow, label),
                tuple(grouped[p].get(status, 0) for p in regions),
            )
            for status, label in POOL_STATUS_LABELS.items()
        ),
    )


def dashboard(uow: UnitOfWork) -> list[Chart]:
    """Every chart of the dashboard, in display order."""
    uow.actor.require(READ)
    units = _units(uow)
    return [
        customers_by_unit(uow, units),
        lines_by_plan(uow),
        open_bars(uow),
        payments_by_day(uow),
        pool_by_region(uow, units),
    ]


def chart(uow: UnitOfWork, key: str) -> Chart:
    """One chart by its key (the export of the data behind it)."""
    uow.actor.require(READ)
    builders: dict[str, Callable[[UnitOfWork], Chart]] = {
        "customers_by_unit": customers_by_unit,
        "lines_by_plan": lines_by_plan,
        "open_bars": open_bars,
        "payments_by_day": payments_by_day,
        "pool_by_region": pool_by_region,
    }
    build = builders.get(key)
    if build is None:
        raise NotFound(_("No such chart {chart}"), chart=key[:40])
    return build(uow)
