"""Devices, their polled status and state changes, SSH host keys and the key/value meta table."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, String, Table, Text, UniqueConstraint

from server.store.columns import at, by, counter, flag, id_table, json_dict, json_list, ref, unique_name
from server.store.metadata import metadata

devices = id_table(
    "devices",
    unique_name(),
    Column("address", String(253), nullable=False),
    Column("kind", String(32)),
    json_list("tags"),
    ref("parent_id", "devices", "SET NULL", nullable=True),
    Column("interval", Integer, nullable=False),
    flag("enabled", True),
    # Non-secret access settings (SNMP version/port/user/protocols, SSH port/user/host keys, checks).
    json_dict("spec"),
    # Encrypted JSON of secrets (communities, keys, passwords); never leaves the server.
    Column("secrets", LargeBinary),
    Column("source", String(16), nullable=False, default="api"),  # "config" or "api"
    at("created_at"),
    at("updated_at"),
)


device_status = Table(
    "device_status",
    metadata,
    ref("device_id", "devices", primary_key=True),
    Column("state", String(16), nullable=False, default="unknown"),
    at("state_since"),
    at("last_polled", nullable=True),
    at("last_ok", nullable=True),
    Column("last_error", Text),
    counter("failures"),
    Column("poll_ms", Float),
    json_dict("facts"),
    json_dict("tables"),
    json_dict("checks"),  # check name -> CheckStatus dict
    json_dict("metrics"),  # check name -> [[metric, labels, value]]
)


state_events = id_table(
    "state_events",
    ref("device_id", "devices"),
    at("ts"),
    Column("old_state", String(16), nullable=False),
    Column("new_state", String(16), nullable=False),
    Column("reason", Text),
    Index("ix_state_events_device_ts", "device_id", "ts"),
)


host_keys = id_table(
    "host_keys",
    ref("device_id", "devices"),
    Column("key_line", Text, nullable=False),  # "ssh-ed25519 AAAA..."
    Column("fingerprint", String(128), nullable=False),
    by("added_by"),
    at("added_at"),
    UniqueConstraint("device_id", "key_line", name="uq_host_keys_device_key"),
)


meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
