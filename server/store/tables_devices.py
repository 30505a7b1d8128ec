"""Devices, their polled status and state changes, SSH host keys and the key/value meta table."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from server.store.metadata import metadata

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("address", String(253), nullable=False),
    Column("kind", String(32)),
    Column("tags", JSON, nullable=False, default=list),
    Column("parent_id", Integer, ForeignKey("devices.id", ondelete="SET NULL")),
    Column("interval", Integer, nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    # Non-secret access settings (SNMP version/port/user/protocols, SSH port/user/host keys, checks).
    Column("spec", JSON, nullable=False, default=dict),
    # Encrypted JSON of secrets (communities, keys, passwords); never leaves the server.
    Column("secrets", LargeBinary),
    Column("source", String(16), nullable=False, default="api"),  # "config" or "api"
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)


device_status = Table(
    "device_status",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), nullable=False, default="unknown"),
    Column("state_since", Float, nullable=False),
    Column("last_polled", Float),
    Column("last_ok", Float),
    Column("last_error", Text),
    Column("failures", Integer, nullable=False, default=0),
    Column("poll_ms", Float),
    Column("facts", JSON, nullable=False, default=dict),
    Column("tables", JSON, nullable=False, default=dict),
    Column("checks", JSON, nullable=False, default=dict),  # check name -> CheckStatus dict
    Column("metrics", JSON, nullable=False, default=dict),  # check name -> [[metric, labels, value]]
)


state_events = Table(
    "state_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("old_state", String(16), nullable=False),
    Column("new_state", String(16), nullable=False),
    Column("reason", Text),
    Index("ix_state_events_device_ts", "device_id", "ts"),
)


host_keys = Table(
    "host_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("key_line", Text, nullable=False),  # "ssh-ed25519 AAAA..."
    Column("fingerprint", String(128), nullable=False),
    Column("added_by", String(64)),
    Column("added_at", Float, nullable=False),
    UniqueConstraint("device_id", "key_line", name="uq_host_keys_device_key"),
)


meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
