"""The one validated Settings object: defaults, then the config file's `settings:`, then POCKETNOC_* env."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.config.inventory import UsmUser


class TrapUser(UsmUser):
    """An SNMPv3 user allowed to send traps and informs."""

    user: str = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _usable(self) -> TrapUser:
        self.check_v3("trap user ")
        return self


class Settings(BaseSettings):
    """Server settings; every field is documented in config/pocketnoc.example.yaml."""

    model_config = SettingsConfigDict(env_prefix="POCKETNOC_", extra="forbid", validate_assignment=True)

    data_dir: Path = Field(default=Path(".data"), description="Where the SQLite database, key and logs live.")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir.")
    config: Path | None = Field(default=None, description="Path of the YAML config file that was loaded.")
    host: str = Field(default="127.0.0.1", description="Address the web server listens on.")
    port: int = Field(default=8080, ge=1, le=65535)
    base_url: str | None = Field(default=None, description="Public URL, printed at start and used in links.")
    secure_cookies: bool = Field(default=False, description="Mark cookies Secure (set true behind HTTPS).")
    session_idle_minutes: int = Field(default=12 * 60, ge=5, le=60 * 24 * 30)
    session_max_hours: int = Field(default=24 * 7, ge=1, le=24 * 90)
    require_2fa_roles: list[str] = Field(default_factory=list, description="Roles that must set up 2FA at next sign-in.")
    stepup_minutes: int = Field(default=10, ge=1, le=24 * 60, description="How long a second factor counts as fresh.")
    trusted_proxies: list[str] = Field(default_factory=list, description="CIDRs whose X-Forwarded-For is believed.")
    push_allow_loopback: bool = Field(
        default=False, description="Accept push endpoints on this host over plain http (a local push service: labs, tests)."
    )
    signin_free_failures: int = Field(default=5, ge=1, le=100, description="Failures per account and address before delays.")
    signin_delay_seconds: float = Field(default=2.0, gt=0, le=3600, description="First delay; it doubles per further failure.")
    signin_max_delay_seconds: float = Field(default=900.0, gt=0, le=86400, description="Longest delay between attempts.")
    signin_account_failures: int = Field(
        default=20, ge=1, le=10000, description="Failures for an account (all addresses) before new addresses wait too."
    )
    signin_address_failures: int = Field(default=30, ge=1, le=10000, description="Failures from one address (all accounts).")
    signin_window_minutes: int = Field(default=60, ge=1, le=24 * 60, description="Failures older than this are forgotten.")
    stepup_max_failures: int = Field(default=5, ge=1, le=100, description="Wrong step-up proofs that sign a session out.")
    poll_concurrency: int = Field(default=200, ge=1, le=5000, description="Checks in flight at once.")
    default_interval: int = Field(default=60, ge=5, le=86400)
    snmp_timeout: float = Field(default=2.0, gt=0, le=60)
    snmp_retries: int = Field(default=1, ge=0, le=5)
    backoff_max_seconds: int = Field(default=600, ge=0, le=86400, description="Cap of unreachable back-off.")
    down_after_failures: int = Field(default=2, ge=1, le=20, description="Failed polls before 'unreachable'.")
    raw_retention_hours: int = Field(default=48, ge=1, le=24 * 365)
    rollup_5m_retention_days: int = Field(default=30, ge=1, le=3650)
    rollup_1h_retention_days: int = Field(default=400, ge=1, le=3650)
    writer_batch_seconds: float = Field(default=0.5, gt=0, le=30)
    storage_reserve_mb: int = Field(default=16, ge=0, le=4096, description="Reserve released when the disk fills.")
    secret_key_file: Path | None = Field(default=None, description="Key encrypting secrets; default data_dir.")
    log_level: str = Field(default="INFO")
    scheduler: str = Field(default="inprocess", description="'inprocess' (APScheduler) or 'queue'.")
    worker_heartbeat_seconds: float = Field(default=5.0, ge=0.5, le=60, description="How often a queue worker reports.")
    worker_silent_seconds: float = Field(default=60.0, ge=2, le=3600, description="Silent this long: worker/site alert.")
    lease_seconds: float = Field(default=15.0, ge=1, le=300, description="Leader lease of scheduler and sender.")
    run_log_minutes: int = Field(default=60, ge=5, le=7 * 1440, description="How long queue check runs are kept.")
    rules_file: Path | None = Field(default=None, description="Alert rules YAML; default: built-in rules only.")
    flap_window_seconds: float = Field(default=600.0, ge=10, le=86400, description="Window counting fire/resolve changes.")
    flap_settle_seconds: float = Field(default=180.0, ge=0, le=86400, description="Calm this long: flapping is stable again.")
    actions_file: Path | None = Field(default=None, description="Remediation action catalog YAML; unset = no actions.")
    channels_file: Path | None = Field(default=None, description="Notifications YAML (channels, routes, escalations).")
    directories_file: Path | None = Field(default=None, description="Directory accounts YAML (AD / LDAP); unset = none.")
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, le=1024**3, description="Largest request body (JSON or form); larger: 413."
    )
    max_json_depth: int = Field(default=64, ge=8, le=512, description="Deepest JSON nesting in a request body; deeper: 400.")
    plugin_dirs: list[str] = Field(
        default_factory=lambda: ["/usr/lib/nagios/plugins", "/usr/lib/monitoring-plugins"],
        description="Directories a nagios check's command must be in (here and on SSH servers).",
    )
    trap_host: str = Field(default="0.0.0.0", description="Address the SNMP trap receiver listens on.")  # noqa: S104
    trap_port: int | None = Field(default=None, ge=1, le=65535, description="Trap receiver port (162); unset = off.")
    trap_communities: list[str] = Field(default_factory=list, description="Communities accepted in v1/v2c traps.")
    trap_v3_users: list[TrapUser] = Field(default_factory=list, description="SNMPv3 users accepted in traps and informs.")
    terminal_idle_minutes: float = Field(default=15, gt=0, le=24 * 60, description="No keystrokes this long: a terminal ends.")
    terminal_max_minutes: float = Field(default=120, gt=0, le=24 * 60, description="Longest a terminal session may last.")
    terminal_resume_seconds: float = Field(default=60, ge=0, le=3600, description="A dropped terminal is kept to resume.")
    terminal_retention_days: int = Field(default=90, ge=1, le=3650, description="How long terminal recordings are kept.")
    terminal_max_sessions: int = Field(default=32, ge=1, le=1000, description="Terminal sessions open at once on this server.")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str) -> str:
        if value not in {"inprocess", "queue"}:
            raise ValueError("must be 'inprocess' or 'queue'")
        return value

    @field_validator("require_2fa_roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"viewer", "operator", "admin"})
        if unknown:
            raise ValueError(f"unknown roles {unknown}; use viewer, operator, admin")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR") from None
        return [c.strip() for c in value]

    @property
    def worker_dead_seconds(self) -> float:
        """Three missed heartbeats: the scheduling leader counts the worker dead (its devices go to the others, its
        sessions are ended), Procrastinate counts its jobs stalled, and the Workers page shows it lost."""
        return 3 * self.worker_heartbeat_seconds

    @property
    def db_url(self) -> str:
        """The database URL in force."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'pocketnoc.db').resolve()}"

    @property
    def key_file(self) -> Path:
        """Path of the secrets key file."""
        return self.secret_key_file or (self.data_dir / "secret.key")


def build_settings(file_values: Mapping[str, object] | None = None, **overrides: object) -> Settings:
    """Merge config-file values under env vars, then explicit overrides (command-line flags) on top."""
    values: dict[str, Any] = dict(file_values or {})
    env_names = {f"POCKETNOC_{name.upper()}" for name in Settings.model_fields}
    for key in list(values):
        if f"POCKETNOC_{key.upper()}" in env_names and f"POCKETNOC_{key.upper()}" in os.environ:
            values.pop(key)  # environment wins over the file
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
