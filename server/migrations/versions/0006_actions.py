"""actions: the run history of remediation actions

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "action_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("danger", sa.String(length=8), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("device_name", sa.String(length=64), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("verification", sa.String(length=16), nullable=True),
        sa.Column("verification_detail", sa.Text(), nullable=True),
        sa.Column("verified_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name=op.f("fk_action_runs_device_id_devices"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_action_runs_alert_id_alerts"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_action_runs_user_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_runs")),
    )
    op.create_index("ix_action_runs_device", "action_runs", ["device_id", "id"])
    op.create_index("ix_action_runs_alert", "action_runs", ["alert_id", "id"])
    op.create_index("ix_action_runs_status", "action_runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_action_runs_status", table_name="action_runs")
    op.drop_index("ix_action_runs_alert", table_name="action_runs")
    op.drop_index("ix_action_runs_device", table_name="action_runs")
    op.drop_table("action_runs")
