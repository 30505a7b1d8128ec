"""Remediation action runs (0006)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from server.store.metadata import metadata

action_runs = Table(
    "action_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("action_id", String(64), nullable=False),
    Column("title", String(80), nullable=False),
    Column("kind", String(8), nullable=False),  # ssh, snmp
    Column("danger", String(8), nullable=False),
    # Runs outlive their device and alert (the audit log keeps them too): names are copied, ids may go NULL.
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="SET NULL")),
    Column("device_name", String(64), nullable=False),
    Column("alert_id", Integer, ForeignKey("alerts.id", ondelete="SET NULL")),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL")),
    Column("username", String(64), nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("params", JSON, nullable=False, default=dict),
    Column("command", Text, nullable=False),  # exactly what ran: the rendered command, or the SET steps
    Column("status", String(16), nullable=False),  # running, succeeded, failed, timed_out, capped, error, interrupted
    Column("exit_code", Integer),
    Column("error", Text),
    Column("output", JSON, nullable=False, default=list),  # [[stream, text], ...], cleaned and capped
    Column("truncated", Boolean, nullable=False, default=False),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("duration", Float),
    Column("verification", String(16)),  # checking, fixed, failing, unverified, skipped
    Column("verification_detail", Text),
    Column("verified_at", Float),
    Index("ix_action_runs_device", "device_id", "id"),
    Index("ix_action_runs_alert", "alert_id", "id"),
    Index("ix_action_runs_status", "status"),
)
