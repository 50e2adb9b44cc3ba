"""The console menu, built from the actor's permissions.

An entry shows when the actor holds any of its permissions. An entry whose pages a later
release delivers has ``route=None``: it leads to an honest "not available yet" page
(``/console/soon/<key>``) rather than to a 404. A helper who builds such a page sets
``route`` to the page's route name — nothing else changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from teleserve.core.actor import Actor
from teleserve.core.i18n import _


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str  # message id, translated by the template
    permissions: tuple[str, ...]  # any of them shows the entry
    route: str | None = None  # route name; None: not available yet
    accesskey: str | None = None


@dataclass(frozen=True)
class NavLink:
    key: str
    label: str
    url: str
    available: bool
    accesskey: str | None


NAV: tuple[NavItem, ...] = (
    NavItem("customers", _("Customers"), ("customers.read",), "customer_search", "c"),
    NavItem("orders", _("Orders"), ("orders.read",)),
    NavItem("tickets", _("Tickets"), ("tickets.read",)),
    NavItem("billing", _("Billing"), ("billing.read",)),
    NavItem("catalog", _("Catalog"), ("catalog.read",), "catalog_list"),
    NavItem("numbers", _("Numbers"), ("numbers.read",), "numbers_ranges"),
    NavItem("terminals", _("Terminals"), ("terminals.read",), "fleet_grid"),
    NavItem("held", _("Held money"), ("payments.settle",), "held_money"),
    NavItem("dashboard", _("Dashboard"), ("reports.read",), "dashboard"),
    NavItem("reports", _("Reports"), ("reports.read",)),
    NavItem("staff", _("Staff & organisation"), ("iam.users.read", "iam.orgs.write"), "staff_list"),
)

NAV_BY_KEY = {item.key: item for item in NAV}


def visible_items(actor: Actor) -> list[NavItem]:
    return [item for item in NAV if any(actor.can(p) for p in item.permissions)]


def nav_for(actor: Actor, request: Request) -> list[NavLink]:
    links = []
    for item in visible_items(actor):
        if item.route is not None:
            url = request.url_for(item.route).path
        else:
            url = request.url_for("console_soon", key=item.key).path
        links.append(NavLink(item.key, item.label, url, item.route is not None, item.accesskey))
    return links
