"""Shared helpers for the payments tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func, select

from teleserve.core.actor import Actor, ActorKind
from teleserve.core.audit import AuditRecord
from teleserve.core.outbox import OutboxMessage
from teleserve.payments.models import (
    account_table,
    entry_table,
    idempotency_table,
    payment_table,
    transfer_table,
)
from teleserve.payments.schemas import PaymentRequest

ROOT = "/op/"
HALL_A = "/op/gd/sz/hall1/"
HALL_B = "/op/gd/gz/hall7/"

ALL_PAYMENT_PERMISSIONS = frozenset(
    {"payments.record", "payments.reverse", "payments.settle", "payments.read"}
)


def staff(org_path: str = "/", permissions: frozenset[str] = ALL_PAYMENT_PERMISSIONS) -> Actor:
    return Actor(ActorKind.staff, f"staff{org_path}", org_path, permissions, "tester")


def cash(
    key: str, amount: int = 5000, account: str | None = "BA1", **fields: Any
) -> PaymentRequest:
    """A kiosk cash payment into box BOX1 of terminal T1."""
    values: dict[str, Any] = {
        "channel": "kiosk_cash",
        "source_id": "BOX1",
        "terminal_id": "T1",
        "terminal_serial": key,
        "org_path": HALL_A,
    }
    values.update(fields)
    return PaymentRequest(key, amount=amount, billing_account_id=account, **values)


def snapshot(engine: Engine) -> dict[str, Any]:
    """Row counts of everything a payment writes, and the money figures."""
    with engine.connect() as conn:
        counts = {
            table.name: conn.scalar(select(func.count()).select_from(table))
            for table in (
                payment_table,
                transfer_table,
                entry_table,
                idempotency_table,
                account_table,
                AuditRecord.__table__,
                OutboxMessage.__table__,
            )
        }
        a = account_table
        balances = {
            row.code: (row.balance, row.pending_credit, row.pending_debit, row.status)
            for row in conn.execute(
                select(a.c.code, a.c.balance, a.c.pending_credit, a.c.pending_debit, a.c.status)
            )
        }
        statuses = dict(conn.execute(select(payment_table.c.id, payment_table.c.status)).all())
        entry_sums = dict(
            conn.execute(
                select(entry_table.c.account_id, func.sum(entry_table.c.amount)).group_by(
                    entry_table.c.account_id
                )
            ).all()
        )
    return {"counts": counts, "balances": balances, "statuses": statuses, "entries": entry_sums}
