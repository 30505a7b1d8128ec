"""The alert engine's memory per (rule, device, labels): status, since, value, recent changes, flapping, its alert.

Read and written in the writer's transaction by server.alerts.writer_hook.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from server.store.schema import alert_states, device_status, devices

StateKey = tuple[str, int, str]  # rule, device id, labels key


def devices_by_id(conn: Connection, ids: list[int]) -> dict[int, Any]:
    """(id, name, kind, tags) of these devices."""
    query = select(devices.c.id, devices.c.name, devices.c.kind, devices.c.tags).where(devices.c.id.in_(ids))
    return {d.id: d for d in conn.execute(query)}


def load(conn: Connection, ids: list[int]) -> dict[StateKey, Any]:
    """The stored states of these devices' keys."""
    rows = conn.execute(select(alert_states).where(alert_states.c.device_id.in_(ids)))
    return {(r.rule, r.device_id, r.labels): r for r in rows}


def update_many(conn: Connection, updates: list[dict[str, Any]]) -> None:
    """Write changed states in one statement; each dict has b_id and v_status, v_since, v_value, v_alert,
    v_changes, v_flapping."""
    if not updates:
        return
    conn.execute(
        update(alert_states)
        .where(alert_states.c.id == bindparam("b_id"))
        .values(
            status=bindparam("v_status"),
            since=bindparam("v_since"),
            value=bindparam("v_value"),
            alert_id=bindparam("v_alert"),
            changes=bindparam("v_changes"),
            flapping=bindparam("v_flapping"),
        ),
        updates,
    )


KEY_COLUMNS = ("rule", "device_id", "labels")
STATE_COLUMNS = ("status", "since", "value", "alert_id", "changes", "flapping")
_UPSERTS: dict[str, Any] = {}  # one statement per dialect, built once (building it costs more than running it)


def upsert_many(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT on the state's unique key for many new keys in one statement (executemany), so two
    writers can never fail on the same new key. Each dict has KEY_COLUMNS and STATE_COLUMNS.

    One statement per batch, not per key: a device's first poll brings ~25 new keys (one per interface for the
    armed interface rules); built and run one by one they cost ~15 ms a device, most of it in building the
    statement, and made a fleet's first interval after a start many times dearer than the next ones.
    """
    if not rows:
        return
    name = conn.dialect.name
    stmt = _UPSERTS.get(name)
    if stmt is None:
        insert = (postgresql if name == "postgresql" else sqlite).insert(alert_states)
        stmt = _UPSERTS[name] = insert.on_conflict_do_update(
            index_elements=list(KEY_COLUMNS), set_={k: insert.excluded[k] for k in STATE_COLUMNS})
    conn.execute(stmt, rows)


def device_graph(conn: Connection) -> list[tuple[int, int | None, str]]:
    """(id, parent id, state) of every polled device: who sits behind whom, and who is in an outage."""
    query = select(devices.c.id, devices.c.parent_id, device_status.c.state).join(
        device_status, device_status.c.device_id == devices.c.id
    )
    return [(int(i), p, str(s)) for i, p, s in conn.execute(query)]
