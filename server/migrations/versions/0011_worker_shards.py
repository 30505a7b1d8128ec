"""worker_shards: each queue worker's share of the devices; check_runs: a (device, check, slot) logged once

Revision ID: 0011_shards
Revises: 0003 (needs 0008's check_runs)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_shards"
down_revision = "0003"
branch_labels = None
depends_on = "0008"

DEDUPE = """
DELETE FROM check_runs WHERE slot IS NOT NULL AND id NOT IN (
    SELECT min(id) FROM check_runs WHERE slot IS NOT NULL GROUP BY device_id, check_name, slot
)
"""


def upgrade() -> None:
    op.create_table(
        "worker_shards",
        sa.Column("name", sa.String(length=64), primary_key=True),
        sa.Column("site", sa.String(length=32), nullable=True),
        sa.Column("devices", sa.Integer(), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("behind", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.execute(DEDUPE)  # the old run log could hold a slot twice (a slot queued by two leaders)
    op.create_index(
        "ux_check_runs_slot",
        "check_runs",
        ["device_id", "check_name", "slot"],
        unique=True,
        postgresql_where=sa.text("slot IS NOT NULL"),
        sqlite_where=sa.text("slot IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_check_runs_slot", table_name="check_runs")
    op.drop_table("worker_shards")
