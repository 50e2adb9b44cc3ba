"""payments: no second unique index on the idempotency key; the terminal index only
for held payments

Both indexes took random keys (one leaf page per payment and index in every money
batch) without serving a query the remaining ones do not: ``payment_idempotency``'s
primary key holds the key's uniqueness and its lookups, and only the held list filters
payments by terminal.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index("uq_payment_idempotency_key")
        batch_op.drop_index("ix_payment_terminal")
        batch_op.create_index(
            "ix_payment_held_terminal",
            ["terminal_id", "terminal_serial"],
            unique=False,
            postgresql_where=sa.text("status = 'held'"),
            sqlite_where=sa.text("status = 'held'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("payment", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_held_terminal")
        batch_op.create_index(
            "ix_payment_terminal", ["terminal_id", "terminal_serial"], unique=False
        )
        batch_op.create_index("uq_payment_idempotency_key", ["idempotency_key"], unique=True)
