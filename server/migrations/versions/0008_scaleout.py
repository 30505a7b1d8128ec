"""scale-out: workers, leases, check runs, check hand-off; Procrastinate's queue schema on PostgreSQL

Revision ID: 0008
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0003"
branch_labels = None
depends_on = None

# Procrastinate's objects, dropped on downgrade (its schema ships no drop script).
_PROCRASTINATE_DROP = """
DROP TABLE IF EXISTS procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers CASCADE;
DO $$
DECLARE f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS sig FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = current_schema() AND p.proname LIKE 'procrastinate%' LOOP
        EXECUTE 'DROP FUNCTION IF EXISTS ' || f.sig || ' CASCADE';
    END LOOP;
END $$;
DROP TYPE IF EXISTS procrastinate_job_to_defer_v1, procrastinate_job_event_type, procrastinate_job_status CASCADE;
"""


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=32), nullable=True),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("instance", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("last_seen", sa.Float(), nullable=False),
        sa.Column("checks_total", sa.BigInteger(), nullable=False),
        sa.Column("checks_per_min", sa.Float(), nullable=False),
        sa.Column("failed_per_min", sa.Float(), nullable=False),
        sa.Column("lag_p50", sa.Float(), nullable=True),
        sa.Column("lag_p95", sa.Float(), nullable=True),
        sa.Column("in_flight", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("queue_worker_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
        sa.UniqueConstraint("name", name=op.f("uq_workers_name")),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        sa.Column("fence", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "check_runs",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("check_name", sa.String(length=64), nullable=False),
        sa.Column("slot", sa.BigInteger(), nullable=True),
        sa.Column("due", sa.Float(), nullable=True),
        sa.Column("started", sa.Float(), nullable=False),
        sa.Column("lag", sa.Float(), nullable=True),
        sa.Column("ms", sa.Float(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name=op.f("fk_check_runs_device_id_devices"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_check_runs")),
    )
    op.create_index("ix_check_runs_started", "check_runs", ["started"])
    op.create_index("ix_check_runs_device", "check_runs", ["device_id", "started"])
    op.create_table(
        "check_handoff",
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("check_name", sa.String(length=64), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"], name=op.f("fk_check_handoff_device_id_devices"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("device_id", "check_name", name=op.f("pk_check_handoff")),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # The job queue of `scheduler: queue` lives in the same database; procrastinate is pinned to 3.10.x,
        # so this is the schema that version expects (a newer one needs a migration applying its sql/migrations).
        from procrastinate.schema import SchemaManager

        bind.exec_driver_sql(SchemaManager.get_schema().replace("%", "%%"))  # the driver reads % as a placeholder


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(_PROCRASTINATE_DROP.replace("%", "%%"))
    op.drop_table("check_handoff")
    op.drop_index("ix_check_runs_device", table_name="check_runs")
    op.drop_index("ix_check_runs_started", table_name="check_runs")
    op.drop_table("check_runs")
    op.drop_table("leases")
    op.drop_table("workers")
