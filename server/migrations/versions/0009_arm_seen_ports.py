"""arm interface-down for ports already seen up: the rule's memory starts from the stored history on upgrade

Before rules could `arm`, every port was watched from the start and ports that were never down had no
alert state. The built-in interface-down now watches a port only once it has been seen up, remembered
as an "ok" state row. So that an upgrade does not forget ports the history already shows up (one that
went down during the upgrade would otherwise never alert), those rows are written here from samples
and rollups.

Revision ID: 0009
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0003"
branch_labels = None
depends_on = None

RULE = "interface-down"


def upgrade() -> None:
    states = sa.table(
        "alert_states",
        sa.column("rule", sa.String),
        sa.column("device_id", sa.Integer),
        sa.column("labels", sa.Text),
        sa.column("status", sa.String),
        sa.column("since", sa.Float),
        sa.column("changes", sa.JSON),
        sa.column("flapping", sa.Boolean),
    )
    series = sa.table(
        "series", sa.column("id", sa.Integer), sa.column("device_id", sa.Integer), sa.column("metric", sa.String),
        sa.column("labels", sa.Text),
    )
    samples = sa.table("samples", sa.column("series_id", sa.Integer), sa.column("value", sa.Float))
    rollups = sa.table("rollups", sa.column("series_id", sa.Integer), sa.column("vmax", sa.Float))
    seen_up = sa.or_(
        sa.exists().where(samples.c.series_id == series.c.id, samples.c.value == 1),
        sa.exists().where(rollups.c.series_id == series.c.id, rollups.c.vmax == 1),
    )
    known = sa.exists().where(
        states.c.rule == RULE, states.c.device_id == series.c.device_id, states.c.labels == series.c.labels
    )
    empty = sa.text("'[]'::json") if op.get_bind().dialect.name == "postgresql" else sa.literal("[]")
    chosen = sa.select(
        sa.literal(RULE), series.c.device_id, series.c.labels, sa.literal("ok"), sa.literal(time.time()), empty, sa.false()
    ).where(series.c.metric == "if_oper_up", seen_up, ~known)
    op.execute(
        states.insert().from_select(["rule", "device_id", "labels", "status", "since", "changes", "flapping"], chosen)
    )


def downgrade() -> None:
    """Nothing to undo: the rows are ordinary "ok" states the engine would have written itself."""
