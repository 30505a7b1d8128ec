"""Raw samples on PostgreSQL are partitioned by day (native declarative partitioning on `ts`, epoch seconds).

Each day is its own table `samples_pYYYYMMDD`; `samples_default` catches a sample of a day that has
no partition yet (a clock far off, or a server down for days). Maintenance keeps partitions ready two
days ahead (moving any rows of such a day out of the default first) and expires raw samples by
dropping whole days: no row-by-row DELETE, no table bloat, no VACUUM debt. Rollups read one day's
partition at a time (partition pruning on the `ts` range). SQLite keeps one plain table.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, text

DAY = 86400
AHEAD_DAYS = 2
PARENT = "samples"
DEFAULT = "samples_default"


def day_name(day_start: int) -> str:
    """The partition of the UTC day starting at `day_start`."""
    return f"{PARENT}_p{dt.datetime.fromtimestamp(day_start, dt.UTC):%Y%m%d}"


def is_partitioned(conn: Connection) -> bool:
    """Whether `samples` is a partitioned table here (PostgreSQL after migration 0012)."""
    if conn.dialect.name != "postgresql":
        return False
    query = text("SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                 "WHERE c.relname = :t AND c.relnamespace = current_schema()::regnamespace")  # fmt: skip
    return conn.execute(query, {"t": PARENT}).first() is not None


BOUNDS_SQL = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname = :t AND p.relnamespace = current_schema()::regnamespace
"""


def day_partitions(conn: Connection) -> dict[str, tuple[int, int]]:
    """Each day partition with its [from, to) bounds in epoch seconds (the default partition left out)."""
    out = {}
    for name, bound in conn.execute(text(BOUNDS_SQL), {"t": PARENT}):
        if "FROM (" not in bound:
            continue  # DEFAULT
        lo = int(bound.split("FROM (", 1)[1].split(")", 1)[0].strip("' "))
        hi = int(bound.split("TO (", 1)[1].split(")", 1)[0].strip("' "))
        out[str(name)] = (lo, hi)
    return out


def create_day(conn: Connection, day_start: int) -> str:
    """Create one day's partition, moving in any rows of that day the default partition caught meanwhile."""
    name, hi = day_name(day_start), day_start + DAY
    bounds = {"lo": day_start, "hi": hi}
    conn.execute(text("CREATE TEMP TABLE _moving ON COMMIT DROP AS WITH d AS (DELETE FROM samples_default "
                      "WHERE ts >= :lo AND ts < :hi RETURNING series_id, ts, value) SELECT * FROM d"), bounds)  # fmt: skip
    conn.execute(text(f"CREATE TABLE {name} PARTITION OF {PARENT} FOR VALUES FROM ({day_start}) TO ({hi})"))
    conn.execute(text("INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value FROM _moving"))
    conn.execute(text("DROP TABLE _moving"))
    return name


def ensure_days(conn: Connection, first: int, last: int) -> list[str]:
    """Partitions for every UTC day from the one holding `first` to the one holding `last`; returns those created."""
    have = {lo for lo, _ in day_partitions(conn).values()}
    made = []
    for day in range(first // DAY * DAY, last // DAY * DAY + 1, DAY):
        if day not in have:
            made.append(create_day(conn, day))
    return made


def maintain(conn: Connection, now: float, raw_hours: int) -> tuple[list[str], list[str]]:
    """Partitions ready for today and AHEAD_DAYS more; days wholly older than the raw retention dropped.
    Returns (created, dropped); does nothing where samples is not partitioned."""
    if not is_partitioned(conn):
        return [], []
    made = ensure_days(conn, int(now), int(now) + AHEAD_DAYS * DAY)
    cutoff = int(now - raw_hours * 3600)
    dropped = []
    for name, (_lo, hi) in sorted(day_partitions(conn).items()):
        if hi <= cutoff:
            conn.execute(text(f"DROP TABLE {name}"))
            dropped.append(name)
    return made, dropped
