"""Fixtures of the numbers tests: actors of two cities and a small graded pool."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, func, select

from teleserve.core.actor import SYSTEM, Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.crypto import blind_index
from teleserve.core.outbox import OutboxMessage
from teleserve.core.uow import UnitOfWork
from teleserve.numbers import service

SZ = "/op/gd/sz/"  # Shenzhen
BJ = "/op/bj/"  # Beijing
STAFF_PERMISSIONS = frozenset({"numbers.read", "numbers.reserve", "numbers.assign"})

# 100 Shenzhen numbers 13800100000-13800100099 and 50 Beijing ones 13901000000-13901000049.
SZ_FIRST = "13800100000"
BJ_FIRST = "13901000000"


def sz_number(n: int) -> str:
    return f"138001000{n:02d}"


def bj_number(n: int) -> str:
    return f"139010000{n:02d}"


def card(n: int) -> str:
    """The blind index of a (made-up) ID card, as customers.service would compute it."""
    return blind_index(f"1101011990010{n:05d}", "id_number")


def staff(org_path: str, *permissions: str, name: str = "agent") -> Actor:
    perms = frozenset(permissions) if permissions else STAFF_PERMISSIONS
    return Actor(ActorKind.staff, f"{name}@{org_path}", org_path, perms, name)


@dataclass
class Pool:
    make_uow: Callable[..., UnitOfWork]

    def run(
        self, fn: Callable[..., object], *args: object, actor: Actor = SYSTEM, **kwargs: object
    ) -> object:
        """Call a service function in its own committed unit of work."""
        with self.make_uow(actor) as uow:
            result = fn(uow, *args, **kwargs)
            uow.commit()
        return result

    def read(
        self, fn: Callable[..., object], *args: object, actor: Actor = SYSTEM, **kwargs: object
    ) -> object:
        with self.make_uow(actor) as uow:
            return fn(uow, *args, **kwargs)


@pytest.fixture
def pool(make_uow: Callable[..., UnitOfWork], frozen_clock: object) -> Pool:
    with make_uow() as uow:
        service.install_default_grades(uow)
        service.create_range(
            uow,
            org_path=SZ,
            kind="mobile",
            prefix="1380010",
            start="0000",
            end="0099",
            name="SZ test",
        )
        service.create_range(
            uow,
            org_path=BJ,
            kind="mobile",
            prefix="1390100",
            start="0000",
            end="0049",
            name="BJ test",
        )
        uow.commit()
    return Pool(make_uow)


def audit_actions(engine: Engine, action: str | None = None) -> list[tuple[str, str, str]]:
    query = select(AuditRecord.action, AuditRecord.subject_id, AuditRecord.detail).order_by(
        AuditRecord.id
    )
    if action is not None:
        query = query.where(AuditRecord.action == action)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query).all()]  # type: ignore[misc]


def outbox(engine: Engine, topic: str) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(OutboxMessage.payload).where(OutboxMessage.topic == topic)
        ).scalars()
        return list(rows)


def count_rows(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())
