"""samples on PostgreSQL: partitioned by day (declarative, on ts); existing rows copied over; SQLite unchanged

Revision ID: 0012_partitions
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import time

from alembic import op
from sqlalchemy import text

from server.store import partitions

revision = "0012_partitions"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = """
    series_id integer NOT NULL,
    ts bigint NOT NULL,
    value double precision NOT NULL,
    CONSTRAINT pk_samples PRIMARY KEY (series_id, ts),
    CONSTRAINT fk_samples_series_id_series FOREIGN KEY (series_id) REFERENCES series(id) ON DELETE CASCADE
"""
CREATE = f"CREATE TABLE samples ({COLUMNS}) PARTITION BY RANGE (ts)"
PLAIN = f"CREATE TABLE samples ({COLUMNS})"


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or partitions.is_partitioned(conn):
        return
    op.execute("ALTER TABLE samples RENAME TO samples_unpartitioned")
    op.execute("ALTER INDEX pk_samples RENAME TO pk_samples_unpartitioned")
    op.execute(CREATE)
    op.execute(f"CREATE TABLE {partitions.DEFAULT} PARTITION OF samples DEFAULT")
    lo, hi = conn.execute(text("SELECT min(ts), max(ts) FROM samples_unpartitioned")).one()
    now = int(time.time())
    first = now if lo is None else min(int(lo), now)
    last = max(now, int(hi or now)) + partitions.AHEAD_DAYS * partitions.DAY
    if last - first > 400 * partitions.DAY:  # a wild timestamp: no thousands of days; the default partition keeps it
        first = max(first, now - 400 * partitions.DAY)
    partitions.ensure_days(conn, first, min(last, now + 400 * partitions.DAY))
    op.execute("INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value FROM samples_unpartitioned")
    op.execute("DROP TABLE samples_unpartitioned")


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql" or not partitions.is_partitioned(conn):
        return
    op.execute("ALTER TABLE samples RENAME TO samples_partitioned")
    op.execute("ALTER INDEX pk_samples RENAME TO pk_samples_partitioned")
    op.execute(PLAIN)
    op.execute("INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value FROM samples_partitioned")
    op.execute("DROP TABLE samples_partitioned CASCADE")
