"""Offering specs and actors shared by the catalog and inventory tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from teleserve.catalog.models import Offering
from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.outbox import OutboxMessage

CATALOG_ADMIN = Actor(
    ActorKind.staff, "cat-admin", "/T/", frozenset({"catalog.read", "catalog.write"})
)
SZ_WRITER = Actor(ActorKind.staff, "sz-writer", "/T/GD/SZ/", frozenset({"catalog.write"}))
ANONYMOUS_CUSTOMER = Actor(ActorKind.customer, "C-1", "/T/GD/SZ/")


def spec(code: str, kind: str = "plan", **fields: Any) -> dict[str, Any]:
    """An offering spec with sensible defaults (active unless told otherwise)."""
    return {
        "code": code,
        "kind": kind,
        "name_zh": f"{code}套餐",
        "name_en": f"{code} offering",
        "status": "active",
        **fields,
    }


def standard_catalog() -> list[dict[str, Any]]:
    """A small operator catalog used across tests."""
    return [
        spec("P_BASIC", monthly_fee=3800, voice_minutes=100, data_mb=10240, data_rate="2.93"),
        spec("P_PLUS", monthly_fee=5800, voice_minutes=300, data_mb=30720),
        spec("P_ORG", customer_categories=["organisation"], account_types=["postpaid"]),
        spec("P_POST", account_types=["postpaid"]),
        spec("P_GD", regions=["/T/GD/"]),
        spec("P_DRAFT", status="draft"),
        spec("BB_100", "broadband", monthly_fee=9900),
        spec("FL_BASIC", "fixed_line", monthly_fee=1500, voice_rate="10"),
        spec("VAS_CLIP", "vas", monthly_fee=500),
        spec("VAS_DATA", "vas", monthly_fee=1000, data_mb=10240, requires_plans=["P_BASIC"]),
        spec("VAS_RING_A", "vas", excludes=["VAS_RING_B"]),
        spec("VAS_RING_B", "vas"),
    ]


def count(engine: Engine, model: Any, *where: Any) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def offerings(engine: Engine) -> int:
    return count(engine, Offering)


def audit_actions(engine: Engine, subject_id: str | None = None) -> list[str]:
    """Audit actions in chain order: chronological for one subject (records of different
    subjects may sit in different chains)."""
    query = select(AuditRecord.action).order_by(AuditRecord.chain, AuditRecord.seq)
    if subject_id is not None:
        query = query.where(AuditRecord.subject_id == subject_id)
    with engine.connect() as conn:
        return list(conn.scalars(query))


def outbox(engine: Engine, topic: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.scalars(
            select(OutboxMessage.payload)
            .where(OutboxMessage.topic == topic)
            .order_by(OutboxMessage.created_at, OutboxMessage.id)
        )
        return list(rows)
