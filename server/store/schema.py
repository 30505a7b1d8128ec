"""Table definitions (SQLAlchemy Core), dialect-neutral for SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

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

series = Table(
    "series",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("labels", Text, nullable=False, default=""),  # canonical JSON of the label dict
    UniqueConstraint("device_id", "metric", "labels", name="uq_series_key"),
)

samples = Table(
    "samples",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("ts", BigInteger, primary_key=True),
    Column("value", Float, nullable=False),
)

rollups = Table(
    "rollups",
    metadata,
    Column("series_id", Integer, ForeignKey("series.id", ondelete="CASCADE"), primary_key=True),
    Column("resolution", Integer, primary_key=True),  # seconds: 300 or 3600
    Column("ts", BigInteger, primary_key=True),
    Column("vmin", Float, nullable=False),
    Column("vmax", Float, nullable=False),
    Column("vavg", Float, nullable=False),
    Column("n", Integer, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
    Column("password_changed_at", Float, nullable=False),
    # Two-factor state (0004): TOTP secrets are sealed with the secret box like device secrets.
    Column("totp_secret", LargeBinary),
    Column("totp_pending", LargeBinary),  # an enrolment not yet confirmed with a code
    Column("totp_last_step", BigInteger),  # last accepted 30 s step: a code works once
    Column("webauthn_id", String(64)),  # random user handle for passkeys (base64url)
)

# Per-user display preferences (0010tz): the time zone pages show times in.
user_prefs = Table(
    "user_prefs",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("tz", String(64), nullable=False),
    Column("tz_auto", Boolean, nullable=False),  # true: taken from the browser on first visit, not chosen
    Column("updated_at", Float, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie value
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("ip", String(64)),
    Column("user_agent", String(256)),
    # "full", or a half-session: "2fa" (password ok, second factor due) or "enrol" (must set up 2FA).
    Column("stage", String(8), nullable=False, default="full", server_default="full"),
    Column("verified_at", Float),  # last fresh sign-in proof (second factor, or password without 2FA)
    Column("failures", Integer, nullable=False, default=0, server_default="0"),  # wrong codes on a half-session
    Index("ix_sessions_user", "user_id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("last_used", Float),
    Column("revoked", Boolean, nullable=False, default=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", Float, nullable=False),
    Column("user_id", Integer),
    Column("username", String(64)),
    Column("action", String(64), nullable=False),
    Column("target", String(256)),
    Column("detail", JSON, nullable=False, default=dict),
    Column("ip", String(64)),
    Index("ix_audit_ts", "ts"),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("ts", Float, nullable=False),
    Column("username", String(64), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_ts", "ts"),
    Index("ix_login_attempts_username", "username", "id"),  # 0010: throttling and the owner's notice, per attempt
    Index("ix_login_attempts_ip_ts", "ip", "ts"),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
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

# ---------------------------------------------------------------- security (0004)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", String(255), nullable=False),  # argon2id; the code itself is shown once
    Column("created_at", Float, nullable=False),
    Column("used_at", Float),
    Index("ix_recovery_codes_user", "user_id"),
)

passkeys = Table(
    "passkeys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("credential_id", String(512), nullable=False, unique=True),  # base64url
    Column("public_key", LargeBinary, nullable=False),  # COSE key; public, not a secret
    Column("sign_count", BigInteger, nullable=False, default=0),
    Column("name", String(64), nullable=False),
    Column("transports", JSON, nullable=False, default=list),
    Column("created_at", Float, nullable=False),
    Column("last_used", Float),
    Index("ix_passkeys_user", "user_id"),
)

webauthn_challenges = Table(
    "webauthn_challenges",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the challenge
    Column("purpose", String(16), nullable=False),  # register, login, second, stepup
    Column("binding", String(64), nullable=False),  # session id or login-form digest it belongs to
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE")),
    Column("created_at", Float, nullable=False),
)

# ---------------------------------------------------------------- notifications (0005)

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

# ---------------------------------------------------------------- actions (0006)

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

# ---------------------------------------------------------------- scale-out (0008)

workers = Table(
    "workers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("site", String(32)),  # None: the central pool
    Column("host", String(128), nullable=False, default=""),
    Column("pid", Integer),
    Column("instance", String(32), nullable=False),  # random per process start: tells a restart from a name clash
    Column("status", String(16), nullable=False),  # running, stopped
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),  # database clock, so hosts' clocks never matter
    Column("checks_total", BigInteger, nullable=False, default=0),
    Column("checks_per_min", Float, nullable=False, default=0),
    Column("failed_per_min", Float, nullable=False, default=0),
    Column("lag_p50", Float),
    Column("lag_p95", Float),
    Column("in_flight", Integer, nullable=False, default=0),
    Column("concurrency", Integer, nullable=False, default=0),
    Column("queue_worker_id", BigInteger),  # the id Procrastinate gave this process (ties running jobs to it)
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),  # "scheduler", "notify", ...
    Column("holder", String(128)),
    Column("fence", BigInteger, nullable=False, default=0),  # +1 at every change of holder
    Column("expires_at", Float, nullable=False, default=0),  # database clock
    Column("acquired_at", Float),
)

check_runs = Table(
    "check_runs",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("worker", String(64), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("slot", BigInteger),  # interval number since the epoch; None for 'poll now'
    Column("due", Float),
    Column("started", Float, nullable=False),
    Column("lag", Float),
    Column("ms", Float),
    Column("ok", Boolean, nullable=False),
    Index("ix_check_runs_started", "started"),
    Index("ix_check_runs_device", "device_id", "started"),
)

check_handoff = Table(
    "check_handoff",
    metadata,
    Column("device_id", Integer, ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
    Column("check_name", String(64), primary_key=True),
    Column("state", JSON, nullable=False),  # last raw counters, failure streak, back-off: what the next worker needs
    Column("ts", Float, nullable=False),
)

# Tables of later features live in their own modules; importing them here puts them in `metadata`.
from server.store import tables_grants, tables_terminal  # noqa: E402,F401
