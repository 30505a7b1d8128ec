"""The durable outbox: alert changes that may notify are written in the alert's own transaction, then wake the worker.

store.alerts.record_event calls `enqueue`; a connection that enqueued sets a flag, and when the pool gets the
connection back after a COMMIT (not a rollback) the worker of this process is woken at once. Commits made by other
processes are found by the worker's regular poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, event, insert

from server.store.schema import notify_outbox

# Alert history kinds that start, stop or pause notifications (flapping: one message to those told); notes do not.
NOTIFY_KINDS = frozenset(
    {"fired", "resolved", "acknowledged", "unacknowledged", "snoozed", "unsnoozed", "suppressed", "unsuppressed",
     "flapping"}
)
_FLAG = "pocketnoc_notify"
_listeners: dict[int, tuple[Engine, Callable[[Any, Any], None]]] = {}
_lock = threading.Lock()


def enqueue(conn: Connection, alert_id: int, kind: str, user: str | None, ts: float) -> None:
    """Write an outbox row for this alert change (same transaction); other kinds are ignored."""
    if kind not in NOTIFY_KINDS:
        return
    conn.execute(insert(notify_outbox).values(alert_id=alert_id, kind=kind, username=user, ts=ts))
    conn.info[_FLAG] = True


def _on_rollback(conn: Connection) -> None:
    conn.info.pop(_FLAG, None)


def watch(engine: Engine, wake: Callable[[], None]) -> None:
    """Call `wake` (thread-safe) after every committed transaction on `engine` that enqueued something."""

    def on_checkin(_dbapi: Any, record: Any) -> None:
        if record.info.pop(_FLAG, None):
            wake()

    with _lock:
        _remove(engine)
        event.listen(engine, "rollback", _on_rollback)
        event.listen(engine.pool, "checkin", on_checkin)
        _listeners[id(engine)] = (engine, on_checkin)


def unwatch(engine: Engine) -> None:
    """Stop waking for this engine."""
    with _lock:
        _remove(engine)


def _remove(engine: Engine) -> None:
    found = _listeners.pop(id(engine), None)
    if found is not None:
        event.remove(engine, "rollback", _on_rollback)
        event.remove(engine.pool, "checkin", found[1])
