"""Fixtures of the inventory tests: a published catalog, actors and a line."""

from __future__ import annotations

from typing import Any

import pytest

from teleserve.catalog import service as catalog_service
from teleserve.core.actor import Actor, ActorKind
from teleserve.inventory import service
from tests.catalog.helpers import CATALOG_ADMIN, standard_catalog

SZ = "/T/GD/SZ/"
BAR_PERMISSIONS = frozenset({"inventory.bars.lost", "inventory.bars.admin", "inventory.bars.fraud"})
AGENT = Actor(ActorKind.staff, "agent-sz", SZ, frozenset({"inventory.read", "inventory.write"}))
SUPERVISOR = Actor(
    ActorKind.staff,
    "sup-gd",
    "/T/GD/",
    frozenset({"inventory.read", "inventory.write"}) | BAR_PERMISSIONS,
)
GZ_AGENT = Actor(
    ActorKind.staff, "agent-gz", "/T/GD/GZ/", frozenset({"inventory.read", "inventory.write"})
)
READER = Actor(ActorKind.staff, "reader", "/T/", frozenset({"inventory.read"}))
OWNER = Actor(ActorKind.customer, "C-1", SZ)
OTHER_CUSTOMER = Actor(ActorKind.customer, "C-2", SZ)
TERMINAL = Actor(ActorKind.terminal, "K-1", SZ, frozenset({"payments.record"}))


def new_line(**overrides: Any) -> dict[str, Any]:
    return {
        "service_number": "13800138000",
        "kind": "mobile",
        "customer_id": "C-1",
        "billing_account_id": "BA-1",
        "org_path": SZ,
        "plan_code": "P_BASIC",
        "customer_category": "individual",
        "account_type": "prepaid",
        "status": "active",
        **overrides,
    }


@pytest.fixture
def catalog(make_uow):
    with make_uow(CATALOG_ADMIN) as uow:
        catalog_service.create_offerings_batch(uow, standard_catalog())
        uow.commit()


@pytest.fixture
def line(make_uow, catalog):
    """An active mobile line of customer C-1 in Shenzhen with the VAS_CLIP service."""
    with make_uow(AGENT) as uow:
        created = service.create_subscription(uow, new_line(vas_codes=["VAS_CLIP"]))
        uow.commit()
    return created
