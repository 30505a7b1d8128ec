"""Accounts: users, preferences, sessions, API tokens, the audit log, sign-in attempts and second factors (0004)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, LargeBinary, String, Table

from server.store.columns import at, by, flag, id_table, json_dict, json_list, ref, unique_name
from server.store.metadata import metadata

users = id_table(
    "users",
    unique_name(),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    flag("disabled"),
    at("created_at"),
    at("password_changed_at"),
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
    ref("user_id", "users", primary_key=True),
    Column("tz", String(64), nullable=False),
    Column("tz_auto", Boolean, nullable=False),  # true: taken from the browser on first visit, not chosen
    at("updated_at"),
)


sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the cookie value
    ref("user_id", "users"),
    Column("csrf", String(64), nullable=False),
    at("created_at"),
    at("last_seen"),
    Column("ip", String(64)),
    Column("user_agent", String(256)),
    # "full", or a half-session: "2fa" (password ok, second factor due) or "enrol" (must set up 2FA).
    Column("stage", String(8), nullable=False, default="full", server_default="full"),
    at("verified_at", nullable=True),  # last fresh sign-in proof (second factor, or password without 2FA)
    Column("failures", Integer, nullable=False, default=0, server_default="0"),  # wrong codes on a half-session
    Index("ix_sessions_user", "user_id"),
)


api_tokens = id_table(
    "api_tokens",
    Column("name", String(64), nullable=False),
    ref("user_id", "users"),
    Column("token_hash", String(64), nullable=False, unique=True),
    at("created_at"),
    at("last_used", nullable=True),
    flag("revoked"),
)


audit = id_table(
    "audit",
    at("ts"),
    Column("user_id", Integer),
    by("username"),
    Column("action", String(64), nullable=False),
    Column("target", String(256)),
    json_dict("detail"),
    Column("ip", String(64)),
    Index("ix_audit_ts", "ts"),
)


login_attempts = id_table(
    "login_attempts",
    at("ts"),
    by("username", nullable=False),
    Column("ip", String(64), nullable=False),
    Column("ok", Boolean, nullable=False),
    Index("ix_login_attempts_ts", "ts"),
    Index("ix_login_attempts_username", "username", "id"),  # 0010: throttling and the owner's notice, per attempt
    Index("ix_login_attempts_ip_ts", "ip", "ts"),
)


recovery_codes = id_table(
    "recovery_codes",
    ref("user_id", "users"),
    Column("code_hash", String(255), nullable=False),  # argon2id; the code itself is shown once
    at("created_at"),
    at("used_at", nullable=True),
    Index("ix_recovery_codes_user", "user_id"),
)


passkeys = id_table(
    "passkeys",
    ref("user_id", "users"),
    Column("credential_id", String(512), nullable=False, unique=True),  # base64url
    Column("public_key", LargeBinary, nullable=False),  # COSE key; public, not a secret
    Column("sign_count", BigInteger, nullable=False, default=0),
    Column("name", String(64), nullable=False),
    json_list("transports"),
    at("created_at"),
    at("last_used", nullable=True),
    Index("ix_passkeys_user", "user_id"),
)


webauthn_challenges = Table(
    "webauthn_challenges",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 of the challenge
    Column("purpose", String(16), nullable=False),  # register, login, second, stepup
    Column("binding", String(64), nullable=False),  # session id or login-form digest it belongs to
    ref("user_id", "users", nullable=True),
    at("created_at"),
)
