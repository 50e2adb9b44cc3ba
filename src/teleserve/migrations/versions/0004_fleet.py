"""terminals: the kiosk fleet — device state, availability intervals, alarms, remote
commands, configuration versions, cash collections and their finance exceptions,
journal reconciliations

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "terminal_alarm",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("device", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("open_key", sa.String(length=150), nullable=True),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("escalation_level", sa.Integer(), nullable=False),
        sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=64), nullable=True),
        sa.Column("cleared_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cleared_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_alarm")),
        sa.UniqueConstraint("open_key", name=op.f("uq_terminal_alarm_open_key")),
    )
    with op.batch_alter_table("terminal_alarm", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_terminal_alarm_org_path"), ["org_path"], unique=False)
        batch_op.create_index("ix_terminal_alarm_status", ["status", "first_seen_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_terminal_alarm_terminal_id"), ["terminal_id"], unique=False
        )

    op.create_table(
        "terminal_cash_collection",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("box_id", sa.String(length=64), nullable=False),
        sa.Column("new_box_id", sa.String(length=64), nullable=False),
        sa.Column("operator_id", sa.String(length=64), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("expected", sa.Text(), nullable=False),
        sa.Column("counted", sa.Text(), nullable=False),
        sa.Column("expected_amount", sa.BigInteger(), nullable=False),
        sa.Column("counted_amount", sa.BigInteger(), nullable=False),
        sa.Column("discrepancy", sa.BigInteger(), nullable=False),
        sa.Column("deposits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_cash_collection")),
        sa.UniqueConstraint(
            "terminal_id", "box_id", name=op.f("uq_terminal_cash_collection_terminal_id_box_id")
        ),
    )
    with op.batch_alter_table("terminal_cash_collection", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_terminal_cash_collection_org_path"), ["org_path"], unique=False
        )

    op.create_table(
        "terminal_collected_deposit",
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint(
            "collection_id", "payment_id", name=op.f("pk_terminal_collected_deposit")
        ),
    )
    op.create_table(
        "terminal_command",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.String(length=1000), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_command")),
    )
    with op.batch_alter_table("terminal_command", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_terminal_command_org_path"), ["org_path"], unique=False
        )
        batch_op.create_index(
            "ix_terminal_command_terminal", ["terminal_id", "status"], unique=False
        )

    op.create_table(
        "terminal_config_version",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_terminal_config_version")),
    )
    with op.batch_alter_table("terminal_config_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_terminal_config_version_org_path"), ["org_path"], unique=False
        )
        batch_op.create_index(
            "ix_terminal_config_version_scope", ["scope", "target", "version"], unique=False
        )

    op.create_table(
        "terminal_device_state",
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("software_version", sa.String(length=64), nullable=False),
        sa.Column("uptime_s", sa.BigInteger(), nullable=False),
        sa.Column("device_mode", sa.String(length=10), nullable=False),
        sa.Column("devices", sa.Text(), nullable=False),
        sa.Column("cash_box_id", sa.String(length=64), nullable=False),
        sa.Column("cash_box_notes", sa.Text(), nullable=False),
        sa.Column("cash_box_count", sa.BigInteger(), nullable=False),
        sa.Column("cash_box_capacity", sa.BigInteger(), nullable=False),
        sa.Column("printer_paper", sa.String(length=8), nullable=False),
        sa.Column("able", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("terminal_id", name=op.f("pk_terminal_device_state")),
    )
    op.create_table(
        "terminal_finance_exception",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("collection_id", sa.String(length=32), nullable=False),
        sa.Column("box_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_finance_exception")),
    )
    with op.batch_alter_table("terminal_finance_exception", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_terminal_finance_exception_collection_id"),
            ["collection_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_terminal_finance_exception_org_path"), ["org_path"], unique=False
        )

    op.create_table(
        "terminal_journal_reconciliation",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("missing_on_server", sa.Integer(), nullable=False),
        sa.Column("missing_on_terminal", sa.Integer(), nullable=False),
        sa.Column("mismatched", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_journal_reconciliation")),
    )
    with op.batch_alter_table("terminal_journal_reconciliation", schema=None) as batch_op:
        batch_op.create_index(
            "ix_terminal_journal_reconciliation_day", ["terminal_id", "business_date"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_terminal_journal_reconciliation_org_path"), ["org_path"], unique=False
        )

    op.create_table(
        "terminal_status_interval",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("terminal_id", sa.String(length=16), nullable=False),
        sa.Column("able", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_status_interval")),
    )
    with op.batch_alter_table("terminal_status_interval", schema=None) as batch_op:
        batch_op.create_index(
            "ix_terminal_status_interval_span", ["terminal_id", "started_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("terminal_status_interval", schema=None) as batch_op:
        batch_op.drop_index("ix_terminal_status_interval_span")

    op.drop_table("terminal_status_interval")
    with op.batch_alter_table("terminal_journal_reconciliation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_terminal_journal_reconciliation_org_path"))
        batch_op.drop_index("ix_terminal_journal_reconciliation_day")

    op.drop_table("terminal_journal_reconciliation")
    with op.batch_alter_table("terminal_finance_exception", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_terminal_finance_exception_org_path"))
        batch_op.drop_index(batch_op.f("ix_terminal_finance_exception_collection_id"))

    op.drop_table("terminal_finance_exception")
    op.drop_table("terminal_device_state")
    with op.batch_alter_table("terminal_config_version", schema=None) as batch_op:
        batch_op.drop_index("ix_terminal_config_version_scope")
        batch_op.drop_index(batch_op.f("ix_terminal_config_version_org_path"))

    op.drop_table("terminal_config_version")
    with op.batch_alter_table("terminal_command", schema=None) as batch_op:
        batch_op.drop_index("ix_terminal_command_terminal")
        batch_op.drop_index(batch_op.f("ix_terminal_command_org_path"))

    op.drop_table("terminal_command")
    op.drop_table("terminal_collected_deposit")
    with op.batch_alter_table("terminal_cash_collection", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_terminal_cash_collection_org_path"))

    op.drop_table("terminal_cash_collection")
    with op.batch_alter_table("terminal_alarm", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_terminal_alarm_terminal_id"))
        batch_op.drop_index("ix_terminal_alarm_status")
        batch_op.drop_index(batch_op.f("ix_terminal_alarm_org_path"))

    op.drop_table("terminal_alarm")
