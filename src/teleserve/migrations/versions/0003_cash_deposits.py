"""terminals: the notes of every recorded cash payment, per cash box

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "terminal_cash_deposit",
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("box_id", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_terminal_cash_deposit")),
    )
    with op.batch_alter_table("terminal_cash_deposit", schema=None) as batch_op:
        batch_op.create_index(
            "ix_terminal_cash_deposit_box", ["terminal_id", "box_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("terminal_cash_deposit", schema=None) as batch_op:
        batch_op.drop_index("ix_terminal_cash_deposit_box")
    op.drop_table("terminal_cash_deposit")
