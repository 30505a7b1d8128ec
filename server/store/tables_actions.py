"""Remediation action runs (0006)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, String, Text

from server.store.columns import at, by, flag, id_table, json_dict, json_list, ref

action_runs = id_table(
    "action_runs",
    Column("action_id", String(64), nullable=False),
    Column("title", String(80), nullable=False),
    Column("kind", String(8), nullable=False),  # ssh, snmp
    Column("danger", String(8), nullable=False),
    # Runs outlive their device and alert (the audit log keeps them too): names are copied, ids may go NULL.
    ref("device_id", "devices", "SET NULL", nullable=True),
    Column("device_name", String(64), nullable=False),
    ref("alert_id", "alerts", "SET NULL", nullable=True),
    ref("user_id", "users", "SET NULL", nullable=True),
    by("username", nullable=False),
    Column("reason", Text, nullable=False, default=""),
    json_dict("params"),
    Column("command", Text, nullable=False),  # exactly what ran: the rendered command, or the SET steps
    Column("status", String(16), nullable=False),  # running, succeeded, failed, timed_out, capped, error, interrupted
    Column("exit_code", Integer),
    Column("error", Text),
    json_list("output"),  # [[stream, text], ...], cleaned and capped
    flag("truncated"),
    at("started_at"),
    at("finished_at", nullable=True),
    Column("duration", Float),
    Column("verification", String(16)),  # checking, fixed, failing, unverified, skipped
    Column("verification_detail", Text),
    at("verified_at", nullable=True),
    Index("ix_action_runs_device", "device_id", "id"),
    Index("ix_action_runs_alert", "alert_id", "id"),
    Index("ix_action_runs_status", "status"),
)
