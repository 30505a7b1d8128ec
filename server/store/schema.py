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
