"""Alerts: rule states, alerts with their events, silences, API-defined rules and received traps."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text, UniqueConstraint

from server.store.metadata import metadata

alert_states = Table(
    "alert_states",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("labels", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),  # ok, pending, firing, held (open only because it flaps)
    Column("since", Float, nullable=False),
    Column("value", Float),
    Column("alert_id", Integer),
    Column("changes", JSON, nullable=False, default=list),  # recent fire/resolve times, for flap detection
    Column("flapping", Boolean, nullable=False, default=False),
    UniqueConstraint("rule", "device_id", "labels", name="uq_alert_states_key"),
    Index("ix_alert_states_device", "device_id"),
)


alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("labels", Text, nullable=False, default=""),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),  # firing, resolved
    Column("started_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("last_value", Float),
    Column("episode", Integer, nullable=False, default=1),
    Column("acked_by", String(64)),
    Column("acked_at", Float),
    Column("snoozed_until", Float),
    Column("suppressed_by", Integer),  # id of the ancestor device whose outage hides this alert
    Column("flapping", Boolean, nullable=False, default=False),
    Column("hidden", Integer, nullable=False, default=0),  # dependent alerts this outage hides
    Column("updated_at", Float, nullable=False),
    Index("ix_alerts_status", "status", "device_id"),
    Index("ix_alerts_device", "device_id", "id"),
)


alert_events = Table(
    "alert_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("username", String(64)),
    Column("text", Text),
    Index("ix_alert_events_alert", "alert_id", "id"),
)


silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("comment", Text, nullable=False, default=""),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE")),
    Column("tag", String(32)),
    Column("everything", Boolean, nullable=False, default=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float),
    Column("recurrence", JSON),  # {"days": [0-6], "start": "HH:MM", "minutes": N, "tz": "Europe/Berlin"}
    Column("created_by", String(64)),
    Column("created_at", Float, nullable=False),
)


alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("definition", JSON, nullable=False),
    Column("created_by", String(64)),
    Column("updated_at", Float, nullable=False),
)


traps = Table(
    "traps",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", Float, nullable=False),
    Column("source", String(64), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="SET NULL")),
    Column("name", String(64)),
    Column("oid", String(256), nullable=False),
    Column("varbinds", JSON, nullable=False, default=list),
    Index("ix_traps_ts", "ts"),
)
