"""Alerts: rule states, alerts with their events, silences, API-defined rules and received traps."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, String, Text, UniqueConstraint

from server.store.columns import at, by, counter, flag, id_table, json_list, ref, unique_name

alert_states = id_table(
    "alert_states",
    Column("rule", String(64), nullable=False),
    ref("device_id", "devices"),
    Column("labels", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),  # ok, pending, firing, held (open only because it flaps)
    at("since"),
    Column("value", Float),
    Column("alert_id", Integer),
    json_list("changes"),  # recent fire/resolve times, for flap detection
    flag("flapping"),
    UniqueConstraint("rule", "device_id", "labels", name="uq_alert_states_key"),
    Index("ix_alert_states_device", "device_id"),
)


alerts = id_table(
    "alerts",
    Column("rule", String(64), nullable=False),
    ref("device_id", "devices"),
    Column("labels", Text, nullable=False, default=""),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("status", String(16), nullable=False),  # firing, resolved
    at("started_at"),
    at("resolved_at", nullable=True),
    Column("last_value", Float),
    Column("episode", Integer, nullable=False, default=1),
    by("acked_by"),
    at("acked_at", nullable=True),
    Column("snoozed_until", Float),
    Column("suppressed_by", Integer),  # id of the ancestor device whose outage hides this alert
    flag("flapping"),
    counter("hidden"),  # dependent alerts this outage hides
    at("updated_at"),
    Index("ix_alerts_status", "status", "device_id"),
    Index("ix_alerts_device", "device_id", "id"),
)


alert_events = id_table(
    "alert_events",
    ref("alert_id", "alerts"),
    at("ts"),
    Column("kind", String(32), nullable=False),
    by("username"),
    Column("text", Text),
    Index("ix_alert_events_alert", "alert_id", "id"),
)


silences = id_table(
    "silences",
    Column("comment", Text, nullable=False, default=""),
    ref("device_id", "devices", nullable=True),
    Column("tag", String(32)),
    flag("everything"),
    at("starts_at"),
    at("ends_at", nullable=True),
    Column("recurrence", JSON),  # {"days": [0-6], "start": "HH:MM", "minutes": N, "tz": "Europe/Berlin"}
    by("created_by"),
    at("created_at"),
)


alert_rules = id_table(
    "alert_rules",
    unique_name(),
    Column("definition", JSON, nullable=False),
    by("created_by"),
    at("updated_at"),
)


traps = id_table(
    "traps",
    at("ts"),
    Column("source", String(64), nullable=False),
    ref("device_id", "devices", "SET NULL", nullable=True),
    Column("name", String(64)),
    Column("oid", String(256), nullable=False),
    json_list("varbinds"),
    Index("ix_traps_ts", "ts"),
)
