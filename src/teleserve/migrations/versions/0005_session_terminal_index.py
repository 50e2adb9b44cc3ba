"""customers: live customer sessions by terminal (a kiosk login ends the others)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cust_session", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cust_session_terminal_live",
            ["terminal_id"],
            unique=False,
            postgresql_where=sa.text("ended_at IS NULL"),
            sqlite_where=sa.text("ended_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("cust_session", schema=None) as batch_op:
        batch_op.drop_index("ix_cust_session_terminal_live")
