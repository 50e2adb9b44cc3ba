"""iam fixtures: cheap argon2 parameters, an org tree, users and actors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from teleserve.core.actor import Actor, ActorKind
from teleserve.iam import passwords
from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgLevel, OrgUnitOut, OrgUnitSpec

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_argon2() -> Iterator[None]:
    # argon2 at production cost is ~140 ms a hash; tests need hundreds of them.
    previous = passwords.use_params(passwords.Argon2Params(1, 8, 1))
    yield
    passwords.use_params(previous)


@pytest.fixture
def tree(make_uow: Callable[..., Any]) -> dict[str, OrgUnitOut]:
    """TS (operator) → GD (province) → GZ, SZ (cities); GZ → GZTH (hall) → GZTH-K1 (site);
    GZ → GZ-K2 (site straight under the city); TS → BJ (province)."""
    specs = [
        OrgUnitSpec(code="TS", name_zh="电信运营商", name_en="Operator", level=OrgLevel.operator),
        OrgUnitSpec(
            code="GD", name_zh="广东", name_en="Guangdong", level="province", parent_code="TS"
        ),
        OrgUnitSpec(
            code="BJ", name_zh="北京", name_en="Beijing", level="province", parent_code="TS"
        ),
        OrgUnitSpec(code="GZ", name_zh="广州", name_en="Guangzhou", level="city", parent_code="GD"),
        OrgUnitSpec(code="SZ", name_zh="深圳", name_en="Shenzhen", level="city", parent_code="GD"),
        OrgUnitSpec(
            code="GZTH", name_zh="天河营业厅", name_en="Tianhe hall", level="hall", parent_code="GZ"
        ),
        OrgUnitSpec(
            code="GZTH-K1",
            name_zh="天河自助点",
            name_en="Tianhe kiosk",
            level="site",
            parent_code="GZTH",
        ),
        OrgUnitSpec(
            code="GZ-K2",
            name_zh="广州站自助点",
            name_en="Station kiosk",
            level="site",
            parent_code="GZ",
        ),
    ]
    with make_uow() as uow:
        units = iam.create_org_units_batch(uow, specs)
        uow.commit()
    return {unit.code: unit for unit in units}


@pytest.fixture
def make_user(make_uow: Callable[..., Any], tree: dict[str, OrgUnitOut]) -> Callable[..., Any]:
    """make_user("alice", "GZ", ["agent"]) → StaffUserOut, created by the system."""

    def factory(username: str, org_code: str, roles: list[str], password: str = PASSWORD) -> Any:
        with make_uow() as uow:
            user = iam.create_user(
                uow, username, username.title(), password, tree[org_code].id, roles
            )
            uow.commit()
        return user

    return factory


def staff(org_path: str, *permissions: str, user_id: str = "s1") -> Actor:
    return Actor(ActorKind.staff, user_id, org_path, frozenset(permissions), "tester")
