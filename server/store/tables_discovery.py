"""Discovery tables: runs, what each run found (the proposals), and each device's neighbours per port."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Index, LargeBinary, String, Text, UniqueConstraint

from server.store.columns import at, by, counter, id_table, ref

discovery_runs = id_table(
    "discovery_runs",
    at("created_at"),
    by("started_by", nullable=False),
    Column("status", String(16), nullable=False),  # running, done, failed, interrupted
    Column("ranges", JSON, nullable=False),
    Column("seed", String(253)),
    Column("options", JSON, nullable=False),  # ports, rate, sweep, fdb, every (no secrets)
    Column("secrets", LargeBinary),  # sealed: the SNMP (and SSH) credentials to try, in order
    ref("previous_id", "discovery_runs", "SET NULL", nullable=True),
    counter("addresses"),
    counter("done"),
    counter("probes"),
    Column("error", Text),
    at("finished_at", nullable=True),
    at("next_at", nullable=True),  # when a scheduled re-run is due
)

discovery_found = id_table(
    "discovery_found",
    ref("run_id", "discovery_runs"),
    Column("address", String(64), nullable=False),
    Column("name", String(64), nullable=False),  # the proposed device name (from sysName, else the address)
    Column("change", String(16), nullable=False),  # new, changed, same, gone
    Column("changed", JSON, nullable=False),  # which fields changed since the previous run
    Column("status", String(16), nullable=False),  # proposed, approved, known (already a device), gone
    ref("device_id", "devices", "SET NULL", nullable=True),
    Column("facts", JSON, nullable=False),  # sys_name, descr, object id, kind, family, profiles, model, serial, ...
    Column("parent", String(64)),  # the proposed parent's name (uplink neighbour towards the poller)
    Column("neighbours", JSON, nullable=False),
    UniqueConstraint("run_id", "address", name="uq_discovery_found_run_address"),
)

device_neighbours = id_table(
    "device_neighbours",
    ref("device_id", "devices"),
    Column("protocol", String(8), nullable=False),
    Column("local_port", String(128), nullable=False),
    Column("remote_name", String(128), nullable=False),
    Column("remote_port", String(128), nullable=False),
    Column("remote_address", String(64), nullable=False),
    Column("remote_chassis", String(128), nullable=False),
    Column("remote_descr", Text, nullable=False),
    at("seen_at"),
    Index("ix_device_neighbours_device", "device_id"),
)
