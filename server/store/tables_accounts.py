"""Accounts: users, preferences, sessions, API tokens, the audit log, sign-in attempts and second factors (0004)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Table

from server.store.metadata import metadata

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
