"""The database schema (SQLAlchemy Core, dialect-neutral for SQLite and PostgreSQL): `metadata` and every table.

The tables live in `server/store/tables_<area>.py`; this module re-exports them, so `from server.store.schema
import devices` keeps working. A new feature puts its tables in its own `tables_<feature>.py` (registered on
`metadata`; `server/store/columns.py` builds the id-keyed table and the column shapes tables share) and adds one
import line at the end of this module, so the migrations and `metadata` see them (tests/server/test_store_migrate.py
fails when a table differs from what the migrations make).
"""

from __future__ import annotations

from server.store.metadata import metadata
from server.store.tables_accounts import (
    api_tokens,
    audit,
    login_attempts,
    passkeys,
    recovery_codes,
    sessions,
    user_prefs,
    users,
    webauthn_challenges,
)
from server.store.tables_actions import action_runs
from server.store.tables_alerts import alert_events, alert_rules, alert_states, alerts, silences, traps
from server.store.tables_devices import device_status, devices, host_keys, meta, state_events
from server.store.tables_metrics import rollups, samples, series
from server.store.tables_notify import (
    notify_channels,
    notify_deliveries,
    notify_messages,
    notify_outbox,
    notify_tokens,
    notify_tracks,
    push_subscriptions,
)
from server.store.tables_scaleout import check_handoff, check_runs, leases, workers

__all__ = [
    "action_runs",
    "alert_events",
    "alert_rules",
    "alert_states",
    "alerts",
    "api_tokens",
    "audit",
    "check_handoff",
    "check_runs",
    "device_status",
    "devices",
    "host_keys",
    "leases",
    "login_attempts",
    "meta",
    "metadata",
    "notify_channels",
    "notify_deliveries",
    "notify_messages",
    "notify_outbox",
    "notify_tokens",
    "notify_tracks",
    "passkeys",
    "push_subscriptions",
    "recovery_codes",
    "rollups",
    "samples",
    "series",
    "sessions",
    "silences",
    "state_events",
    "traps",
    "user_prefs",
    "users",
    "webauthn_challenges",
    "workers",
]

# Feature table modules register here, one import line each (`from server.store import tables_<feature>` with noqa F401).
from server.store import (  # noqa: F401
    tables_directories,
    tables_discovery,
    tables_grants,
    tables_terminal,
)
