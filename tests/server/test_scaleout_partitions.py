"""Raw samples on PostgreSQL are partitioned by day: an existing install's samples are moved over by the migration,
retention drops whole days, and a day without a partition yet is caught and moved into its own when it is made."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from alembic import command

from server.store import partitions
from server.store.db import Connection, Engine, alembic_config, make_engine, migrate
from server.store.metrics import expire, rollup
from tests import sql
from tests.server.conftest import PgServer

pytestmark = pytest.mark.pg
DAY = partitions.DAY


@pytest.fixture
def old_install(pg_server: PgServer) -> Iterator[Engine]:
    """A database at the schema before partitioning (revision 0003) with a week of samples in it."""
    name = pg_server.create()
    url = pg_server.url(name)
    engine = make_engine(url)
    with engine.connect() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.commit()
    now = int(time.time())
    with engine.begin() as conn:
        sql.run(conn, "INSERT INTO devices (id, name, address, tags, interval, enabled, spec, source, created_at, "
                      "updated_at) VALUES (1, 'sw', '192.0.2.1', '[]', 60, true, '{}', 'api', 0, 0)")  # fmt: skip
        sql.run(conn, "INSERT INTO series (id, device_id, metric, labels) VALUES (1, 1, 'cpu', ''), (2, 1, 'mem', '')")
        sql.run(
            conn,
            "INSERT INTO samples (series_id, ts, value) SELECT s, :now - g * 600, g FROM generate_series(0, 1007) g, "
            "(VALUES (1), (2)) v(s)",
            now=now,
        )  # every 10 minutes for 7 days, two series
    yield engine
    engine.dispose()
    pg_server.drop(name)


def _samples(conn: Connection) -> list[tuple[int, int, float]]:
    return [tuple(r) for r in sql.rows(conn, "SELECT series_id, ts, value FROM samples ORDER BY 1, 2")]


def test_the_migration_moves_every_sample_into_day_partitions_and_retention_drops_whole_days(old_install: Engine) -> None:
    engine = old_install
    with engine.connect() as conn:
        before = _samples(conn)
        assert not partitions.is_partitioned(conn)
    migrate(engine)
    now = time.time()
    with engine.begin() as conn:
        assert partitions.is_partitioned(conn)
        assert _samples(conn) == before  # nothing lost, nothing doubled
        days = partitions.day_partitions(conn)
        first = min(ts for _, ts, _ in before) // DAY * DAY
        assert sorted(lo for lo, _ in days.values()) == list(range(first, int(now) // DAY * DAY + 3 * DAY, DAY))
        assert sql.scalar(conn, "SELECT count(*) FROM samples_default") == 0
        # Each day's rows are in that day's table; the series' foreign key still cascades.
        for name, (lo, hi) in days.items():
            query = "SELECT count(*) FROM " + name + " WHERE ts < :lo OR ts >= :hi"  # noqa: S608 - our partition names
            assert sql.scalar(conn, query, lo=lo, hi=hi) == 0
        # Rollups read the partitions like the plain table.
        assert rollup(conn, now)[300] > 0

        # Retention of 48 h: every day wholly older is dropped (a table, not rows), the boundary day trimmed.
        # Samples are 10 min apart: in the first hour of a UTC day a 48 h cutoff can leave the boundary day no row
        # before it, so retention is then 47 h (the cutoff an hour into its day).
        hours = 48 if now % DAY >= 3600 else 47
        removed = expire(conn, hours, 30, 365, now=now)
        left = partitions.day_partitions(conn)
        cutoff = int(now - hours * 3600)
        assert all(hi > cutoff for _, hi in left.values())
        assert len(left) < len(days)
        assert removed > 0  # the rows of the boundary day before the cutoff
        kept = _samples(conn)
        assert kept == [r for r in before if r[1] >= cutoff]

        # A sample of a day that has no partition yet (e.g. a server down for days) lands in the default partition,
        # and moves into its own day when maintenance makes it.
        far = int(now) + 10 * DAY
        sql.run(conn, "INSERT INTO samples (series_id, ts, value) VALUES (1, :ts, 42)", ts=far)
        assert sql.scalar(conn, "SELECT count(*) FROM samples_default") == 1
        made = partitions.ensure_days(conn, far, far)
        assert made == [partitions.day_name(far // DAY * DAY)]
        assert sql.scalar(conn, "SELECT count(*) FROM samples_default") == 0
        assert sql.scalar(conn, "SELECT value FROM " + made[0]) == 42  # noqa: S608 - a partition name

        sql.run(conn, "DELETE FROM series WHERE id = 2")  # cascades into every partition
        assert sql.scalar(conn, "SELECT count(*) FROM samples WHERE series_id = 2") == 0


def test_sqlite_keeps_one_plain_samples_table(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    migrate(engine)
    with engine.begin() as conn:
        assert not partitions.is_partitioned(conn)
        assert partitions.maintain(conn, time.time(), 48) == ([], [])
    engine.dispose()
