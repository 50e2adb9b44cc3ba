"""Fixtures of the terminals tests: an org tree with sites in two cities, staff actors,
and helpers to register terminals and read what a change left behind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, select

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.outbox import OutboxMessage
from teleserve.core.uow import UnitOfWork
from teleserve.iam import service as iam
from teleserve.iam.schemas import OrgUnitOut, OrgUnitSpec
from teleserve.terminals import service
from teleserve.terminals.schemas import RegisteredTerminal

GZ = "/TS/GD/GZ/"
SZ = "/TS/GD/SZ/"


def staff(org_path: str, *permissions: str, user_id: str = "ops") -> Actor:
    return Actor(ActorKind.staff, user_id, org_path, frozenset(permissions), "tester")


GZ_OPS = staff(GZ, "terminals.read", "terminals.write", "iam.orgs.read", user_id="ops-gz")
SZ_OPS = staff(SZ, "terminals.read", "terminals.write", "iam.orgs.read", user_id="ops-sz")
GZ_READER = staff(GZ, "terminals.read", "iam.orgs.read", user_id="reader-gz")
ADMIN = staff("/", "*", user_id="admin")


@pytest.fixture
def tree(make_uow: Callable[..., UnitOfWork]) -> dict[str, OrgUnitOut]:
    """TS → GD → GZ (city) → GZTH (hall) → GZTH-K1 (site); GZ → GZ-K2 (site);
    GD → SZ (city) → SZ01 (hall)."""
    specs = [
        OrgUnitSpec(code="TS", name_zh="运营商", name_en="Operator", level="operator"),
        OrgUnitSpec(
            code="GD", name_zh="广东", name_en="Guangdong", level="province", parent_code="TS"
        ),
        OrgUnitSpec(code="GZ", name_zh="广州", name_en="Guangzhou", level="city", parent_code="GD"),
        OrgUnitSpec(code="SZ", name_zh="深圳", name_en="Shenzhen", level="city", parent_code="GD"),
        OrgUnitSpec(
            code="GZTH", name_zh="天河营业厅", name_en="Tianhe", level="hall", parent_code="GZ"
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
            name_zh="火车站自助点",
            name_en="Station kiosk",
            level="site",
            parent_code="GZ",
        ),
        OrgUnitSpec(
            code="SZ01", name_zh="福田营业厅", name_en="Futian", level="hall", parent_code="SZ"
        ),
    ]
    with make_uow() as uow:
        units = iam.create_org_units_batch(uow, specs)
        uow.commit()
    return {unit.code: unit for unit in units}


@pytest.fixture
def register(
    make_uow: Callable[..., UnitOfWork], tree: dict[str, OrgUnitOut]
) -> Callable[..., RegisteredTerminal]:
    """register("K1", site="GZTH-K1", actor=GZ_OPS, **spec) → the committed registration."""

    def factory(
        terminal_id: str, site: str = "GZTH-K1", actor: Actor = GZ_OPS, **spec: Any
    ) -> RegisteredTerminal:
        with make_uow(actor) as uow:
            created = service.register_terminal(
                uow, {"terminal_id": terminal_id, "site": site, **spec}
            )
            uow.commit()
        return created

    return factory


@pytest.fixture
def run(make_uow: Callable[..., UnitOfWork]) -> Callable[..., Any]:
    """run(actor, fn, *args, **kwargs): one service call in a committed unit of work."""

    def call(actor: Actor, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with make_uow(actor) as uow:
            result = fn(uow, *args, **kwargs)
            uow.commit()
        return result

    return call


def audit_actions(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    import json

    with engine.connect() as conn:
        rows = conn.execute(
            select(AuditRecord.action, AuditRecord.detail)
            .where(AuditRecord.action.startswith("terminals."))
            .order_by(AuditRecord.at, AuditRecord.id)
        ).all()
    return [(row.action, json.loads(row.detail)) for row in rows]


def events(engine: Engine, topic_prefix: str = "terminals.") -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.topic, OutboxMessage.payload)
            .where(OutboxMessage.topic.startswith(topic_prefix))
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
        ).all()
    return [(row.topic, row.payload) for row in rows]


def install_key(engine: Engine, terminal_id: str, key: bytes) -> None:
    """Give a registered terminal a known master key (the TSP/1 test vectors' key), as
    if the kiosk had been set up with it."""
    from sqlalchemy import update

    from teleserve.core import crypto
    from teleserve.terminals.models import Terminal, TerminalMasterKey

    with engine.begin() as conn:
        pk = conn.execute(select(Terminal.id).where(Terminal.terminal_id == terminal_id)).scalar()
        sealed = crypto.encrypt(key.hex(), f"terminals.master_key:{terminal_id}")
        conn.execute(
            update(TerminalMasterKey)
            .where(TerminalMasterKey.terminal_pk == pk)
            .values(key_enc=sealed)
        )
