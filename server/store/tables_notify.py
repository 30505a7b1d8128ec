"""Notifications (0005): the outbox, channels, push subscriptions, messages, deliveries, escalation tracks, action tokens."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, Text

from server.store.metadata import metadata

# One row per alert change that may notify, written by store.alerts.record_event in the alert's transaction.
notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("username", String(64)),
    Column("ts", Float, nullable=False),
    Column("done_at", Float),
    Index("ix_notify_outbox_pending", "done_at", "id"),
)


notify_channels = Table(
    "notify_channels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # webhook, email, apprise
    Column("secret", LargeBinary, nullable=False),  # sealed {"url": ...}: channel URLs carry tokens
    Column("display", String(300), nullable=False),  # the URL with secrets masked
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE")),  # personal channel of a user
    Column("enabled", Boolean, nullable=False, default=True),
    Column("allow_unsafe", Boolean, nullable=False, default=False),
    Column("source", String(16), nullable=False, default="api"),  # "config" or "api"
    Column("status", String(16), nullable=False, default="ok"),  # ok, failing, broken
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed attempts
    Column("broken_since", Float),
    Column("last_ok", Float),
    Column("last_attempt", Float),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)


push_subscriptions = Table(
    "push_subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("endpoint_hash", String(64), nullable=False, unique=True),
    Column("secret", LargeBinary, nullable=False),  # sealed {"endpoint", "p256dh", "auth"}
    Column("service", String(200), nullable=False),  # origin of the push service, for the device list
    Column("label", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_ok", Float),
    Column("last_error", Text),
    Column("failures", Integer, nullable=False, default=0),
    Index("ix_push_subscriptions_user", "user_id"),
)


notify_messages = Table(
    "notify_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("locked_until", Float),  # lease of the worker sending it
    Column("attempts", Integer, nullable=False, default=0),
    # pending, sent, dead, gone, skipped, grouped (waits in a summary), summarized
    Column("status", String(16), nullable=False),
    Column("kind", String(16), nullable=False),  # trigger, escalate, reminder, resolve, summary, test, system
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE")),
    Column("episode", Integer),
    Column("dedup_key", String(96), nullable=False),
    Column("target_type", String(8), nullable=False),  # channel, push
    Column("target_id", Integer, nullable=False),
    Column("user_id", Integer),  # the person it is for, when it is for a person
    Column("summary_id", Integer),  # the summary a grouped message waits in
    Column("payload", JSON, nullable=False, default=dict),
    Column("sent_at", Float),
    Column("last_status", String(64)),
    Column("last_error", Text),
    Index("ix_notify_messages_due", "status", "next_at"),
    Index("ix_notify_messages_target", "target_type", "target_id", "alert_id", "id"),
    Index("ix_notify_messages_user", "user_id", "id"),
    Index("ix_notify_messages_summary", "summary_id"),
)


notify_deliveries = Table(
    "notify_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", Integer, ForeignKey("notify_messages.id", ondelete="CASCADE"), nullable=False),
    Column("ts", Float, nullable=False),
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
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), primary_key=True),
    Column("episode", Integer, nullable=False),
    Column("status", String(8), nullable=False),  # held, active, closing, acked, done
    Column("notified", Boolean, nullable=False, default=False),
    Column("plan", JSON, nullable=False, default=list),  # [{"route", "escalation", "step", "loop", "next_at"}]
    Column("next_at", Float),
    Column("updated_at", Float, nullable=False),
    Index("ix_notify_tracks_due", "status", "next_at"),
)


# Single-use action tokens carried inside push payloads (Acknowledge / Snooze from the notification).
notify_tokens = Table(
    "notify_tokens",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the token
    Column("message_id", Integer, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float),
    Index("ix_notify_tokens_message", "message_id"),
)
