"""Discovery tables: runs, what each run found (the proposals), and each device's neighbours per port."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from server.store.schema import metadata

discovery_runs = Table(
    "discovery_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("started_by", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # running, done, failed, interrupted
    Column("ranges", JSON, nullable=False),
    Column("seed", String(253)),
    Column("options", JSON, nullable=False),  # ports, rate, sweep, fdb, every (no secrets)
    Column("secrets", LargeBinary),  # sealed: the SNMP (and SSH) credentials to try, in order
    Column("previous_id", Integer, ForeignKey("discovery_runs.id", ondelete="SET NULL")),
    Column("addresses", Integer, nullable=False, default=0),
    Column("done", Integer, nullable=False, default=0),
    Column("probes", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("finished_at", Float),
    Column("next_at", Float),  # when a scheduled re-run is due
)

discovery_found = Table(
    "discovery_found",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("discovery_runs.id", ondelete="CASCADE"), nullable=False),
    Column("address", String(64), nullable=False),
    Column("name", String(64), nullable=False),  # the proposed device name (from sysName, else the address)
    Column("change", String(16), nullable=False),  # new, changed, same, gone
    Column("changed", JSON, nullable=False),  # which fields changed since the previous run
    Column("status", String(16), nullable=False),  # proposed, approved, known (already a device), gone
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="SET NULL")),
    Column("facts", JSON, nullable=False),  # sys_name, descr, object id, kind, family, profiles, model, serial, ...
    Column("parent", String(64)),  # the proposed parent's name (uplink neighbour towards the poller)
    Column("neighbours", JSON, nullable=False),
    UniqueConstraint("run_id", "address", name="uq_discovery_found_run_address"),
)

device_neighbours = Table(
    "device_neighbours",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("protocol", String(8), nullable=False),
    Column("local_port", String(128), nullable=False),
    Column("remote_name", String(128), nullable=False),
    Column("remote_port", String(128), nullable=False),
    Column("remote_address", String(64), nullable=False),
    Column("remote_chassis", String(128), nullable=False),
    Column("remote_descr", Text, nullable=False),
    Column("seen_at", Float, nullable=False),
    Index("ix_device_neighbours_device", "device_id"),
)
