"""Scale-out (0008): queue workers, leases, per-check run records and check hand-off state."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, String, Table

from server.store.columns import at, by, counter, id_table, ref, unique_name
from server.store.metadata import metadata

workers = id_table(
    "workers",
    unique_name(),
    Column("site", String(32)),  # None: the central pool
    Column("host", String(128), nullable=False, default=""),
    Column("pid", Integer),
    Column("instance", String(32), nullable=False),  # random per process start: tells a restart from a name clash
    Column("status", String(16), nullable=False),  # running, stopped
    at("started_at"),
    at("last_seen"),  # database clock, so hosts' clocks never matter
    Column("checks_total", BigInteger, nullable=False, default=0),
    Column("checks_per_min", Float, nullable=False, default=0),
    Column("failed_per_min", Float, nullable=False, default=0),
    Column("lag_p50", Float),
    Column("lag_p95", Float),
    counter("in_flight"),
    counter("concurrency"),
    Column("queue_worker_id", BigInteger),  # the id Procrastinate gave this process (ties running jobs to it)
)


leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),  # "scheduler", "notify", ...
    Column("holder", String(128)),
    Column("fence", BigInteger, nullable=False, default=0),  # +1 at every change of holder
    Column("expires_at", Float, nullable=False, default=0),  # database clock
    at("acquired_at", nullable=True),
)


check_runs = Table(
    "check_runs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    by("worker", nullable=False),
    ref("device_id", "devices"),
    Column("check_name", String(64), nullable=False),
    Column("slot", BigInteger),  # interval number since the epoch; None for 'poll now'
    at("due", nullable=True),
    at("started"),
    Column("lag", Float),
    Column("ms", Float),
    Column("ok", Boolean, nullable=False),
    Index("ix_check_runs_started", "started"),
    Index("ix_check_runs_device", "device_id", "started"),
)


check_handoff = Table(
    "check_handoff",
    metadata,
    ref("device_id", "devices", primary_key=True),
    Column("check_name", String(64), primary_key=True),
    Column("state", JSON, nullable=False),  # last raw counters, failure streak, back-off: what the next worker needs
    at("ts"),
)
