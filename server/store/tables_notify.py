"""Notifications (0005): the outbox, channels, push subscriptions, messages, deliveries, escalation tracks, action tokens."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, String, Table, Text

from server.store.columns import at, by, counter, flag, id_table, json_dict, json_list, ref, unique_name
from server.store.metadata import metadata

# One row per alert change that may notify, written by store.alerts.record_event in the alert's transaction.
notify_outbox = id_table(
    "notify_outbox",
    ref("alert_id", "alerts"),
    Column("kind", String(32), nullable=False),
    by("username"),
    at("ts"),
    at("done_at", nullable=True),
    Index("ix_notify_outbox_pending", "done_at", "id"),
)


notify_channels = id_table(
    "notify_channels",
    unique_name(),
    Column("kind", String(16), nullable=False),  # webhook, email, apprise
    Column("secret", LargeBinary, nullable=False),  # sealed {"url": ...}: channel URLs carry tokens
    Column("display", String(300), nullable=False),  # the URL with secrets masked
    ref("user_id", "users", nullable=True),  # personal channel of a user
    flag("enabled", True),
    flag("allow_unsafe"),
    Column("source", String(16), nullable=False, default="api"),  # "config" or "api"
    Column("status", String(16), nullable=False, default="ok"),  # ok, failing, broken
    counter("failures"),  # consecutive failed attempts
    at("broken_since", nullable=True),
    at("last_ok", nullable=True),
    at("last_attempt", nullable=True),
    Column("last_error", Text),
    at("created_at"),
    at("updated_at"),
)


push_subscriptions = id_table(
    "push_subscriptions",
    ref("user_id", "users"),
    Column("endpoint_hash", String(64), nullable=False, unique=True),
    Column("secret", LargeBinary, nullable=False),  # sealed {"endpoint", "p256dh", "auth"}
    Column("service", String(200), nullable=False),  # origin of the push service, for the device list
    Column("label", String(100), nullable=False),
    at("created_at"),
    at("last_ok", nullable=True),
    Column("last_error", Text),
    counter("failures"),
    Index("ix_push_subscriptions_user", "user_id"),
)


notify_messages = id_table(
    "notify_messages",
    at("created_at"),
    at("next_at"),
    Column("locked_until", Float),  # lease of the worker sending it
    counter("attempts"),
    # pending, sent, dead, gone, skipped, grouped (waits in a summary), summarized
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),  # trigger, escalate, reminder, resolve, summary, test, system
    ref("alert_id", "alerts", nullable=True),
    Column("episode", Integer),
    Column("dedup_key", String(96), nullable=False),
    Column("target_type", String(8), nullable=False),  # channel, push
    Column("target_id", Integer, nullable=False),
    Column("user_id", Integer),  # the person it is for, when it is for a person
    Column("summary_id", Integer),  # the summary a grouped message waits in
    json_dict("payload"),
    at("sent_at", nullable=True),
    Column("last_status", String(64)),
    Column("last_error", Text),
    Index("ix_notify_messages_due", "status", "next_at"),
    Index("ix_notify_messages_target", "target_type", "target_id", "alert_id", "id"),
    Index("ix_notify_messages_user", "user_id", "id"),
    Index("ix_notify_messages_summary", "summary_id"),
)


notify_deliveries = id_table(
    "notify_deliveries",
    ref("message_id", "notify_messages"),
    at("ts"),
    Column("result", String(16), nullable=False),  # ok, retry, dead, gone, skipped
    Column("status", String(64)),  # provider status: "HTTP 201", "SMTP 250", "apprise error=400"
    Column("detail", Text),
    Column("ms", Float),
    Index("ix_notify_deliveries_message", "message_id"),
)


# Escalation state of each alert that matched a route: which step comes next, and when.
notify_tracks = Table(
    "notify_tracks",
    metadata,
    ref("alert_id", "alerts", primary_key=True),
    Column("episode", Integer, nullable=False),
    Column("status", String(8), nullable=False),  # held, active, closing, acked, done
    flag("notified"),
    json_list("plan"),  # [{"route", "escalation", "step", "loop", "next_at"}]
    at("next_at", nullable=True),
    at("updated_at"),
    Index("ix_notify_tracks_due", "status", "next_at"),
)


# Single-use action tokens carried inside push payloads (Acknowledge / Snooze from the notification).
notify_tokens = Table(
    "notify_tokens",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the token
    Column("message_id", Integer, nullable=False),
    ref("user_id", "users"),
    ref("alert_id", "alerts"),
    at("created_at"),
    at("expires_at"),
    at("used_at", nullable=True),
    Index("ix_notify_tokens_message", "message_id"),
)
