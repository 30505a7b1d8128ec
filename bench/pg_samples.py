"""The writer's sample cost on PostgreSQL (day-partitioned `samples`) and on SQLite, in the same run.

Writes `polls` polls of `samples` samples each (like an SNMP poll of a 24-port switch: 208) through
store.metrics.write_samples in batches of `batch` polls per transaction, the way the writer does, into
a scratch database; reports client CPU, PostgreSQL backend CPU and bytes on disk per sample and per poll.

    python -m bench.pg_samples [--polls 2000] [--samples 208] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.scaleout import PG, TICKS, _pg_user
from server.store import diagnostics
from server.store.db import make_engine, migrate
from server.store.metrics import SeriesCache, write_samples


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _one(url: str, polls: int, per_poll: int, batch: int, devices: int = 100) -> dict[str, Any]:
    engine = make_engine(url)
    migrate(engine)
    cache = SeriesCache()
    base = int(time.time()) - polls  # one poll a second per device group: days stay in today's partition or two
    with engine.begin() as conn:
        ids = diagnostics.add_quiet_devices(conn, [f"d{i}" for i in range(devices)])
    pg = url.startswith("postgresql")
    with engine.connect() as conn:
        backend = diagnostics.backend_pid(conn)
    cpu0, pg0, t0 = time.process_time(), (_proc_cpu(backend) if backend else 0.0), time.perf_counter()
    for start in range(0, polls, batch):
        rows = []
        for p in range(start, min(polls, start + batch)):
            device, ts = ids[p % devices], base + p
            rows += [(device, "if_in_bps", f'{{"if":"{i}"}}', ts, float(p * i)) for i in range(per_poll)]
        with engine.begin() as conn:
            if backend:  # the pool hands out the same connection: its backend is the one measured
                assert diagnostics.backend_pid(conn) == backend
            write_samples(conn, cache, rows)
    cpu1, pg1, t1 = time.process_time(), (_proc_cpu(backend) if backend else 0.0), time.perf_counter()
    with engine.connect() as conn:
        size = diagnostics.samples_bytes(conn)
        count = diagnostics.count_samples(conn)
    engine.dispose()
    if not pg:
        size = sum(f.stat().st_size for f in Path(url.removeprefix("sqlite:///")).parent.glob("*.db*"))
    n = polls * per_poll
    return {"samples": count, "client_us_per_sample": 1e6 * (cpu1 - cpu0) / n, "pg_us_per_sample": 1e6 * (pg1 - pg0) / n,
            "wall_us_per_sample": 1e6 * (t1 - t0) / n, "bytes_per_sample": int(size or 0) / max(count, 1),
            "client_ms_per_poll": 1000 * (cpu1 - cpu0) / polls, "pg_ms_per_poll": 1000 * (pg1 - pg0) / polls}  # fmt: skip


def run(polls: int, per_poll: int, batch: int) -> dict[str, Any]:
    """Both engines, same rows."""
    user = _pg_user()
    name = f"pn_bench_{secrets.token_hex(4)}"
    with psycopg.connect(**PG, user=user, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    try:
        pg = _one(f"postgresql://{user}@{PG['host']}:{PG['port']}/{name}", polls, per_poll, batch)
    finally:
        with psycopg.connect(**PG, user=user, dbname="postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        lite = _one(f"sqlite:///{tmp}/store.db", polls, per_poll, batch)
    return {"polls": polls, "samples_per_poll": per_poll, "polls_per_transaction": batch, "load": os.getloadavg()[0],
            "postgresql": pg, "sqlite": lite}  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=208)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps(run(args.polls, args.samples, args.batch), indent=1))
