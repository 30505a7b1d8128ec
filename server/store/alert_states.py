"""The alert engine's memory per (rule, device, labels): status, since, value, recent changes, flapping, its alert.

Read and written in the writer's transaction by server.alerts.writer_hook.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from server.store.schema import alert_states, device_status, devices

StateKey = tuple[str, int, str]  # rule, device id, labels key


class RuleDevice(NamedTuple):
    """A device as the rules see it: id, name, kind, tags."""

    id: int
    name: str
    kind: str | None
    tags: list[str] | None


class StoredState(NamedTuple):
    """The engine's memory of one key (a row of alert_states, in its column order)."""

    id: int
    rule: str
    device_id: int
    labels: str
    status: str
    since: float
    value: float | None
    alert_id: int | None
    changes: list[float] | str | None  # recent fire/resolve times (JSON text on a driver that does not decode it)
    flapping: bool


class StateValues(TypedDict):
    """What the engine remembers of a key: the columns of alert_states besides its id and its key (STATE_COLUMNS)."""

    status: str
    since: float
    value: float | None
    alert_id: int | None
    changes: list[float]
    flapping: bool


KEY_COLUMNS = ("rule", "device_id", "labels")
STATE_COLUMNS = tuple(StateValues.__annotations__)


def devices_by_id(conn: Connection, ids: list[int]) -> dict[int, RuleDevice]:
    """(id, name, kind, tags) of these devices."""
    query = select(devices.c.id, devices.c.name, devices.c.kind, devices.c.tags).where(devices.c.id.in_(ids))
    return {d.id: RuleDevice._make(d) for d in conn.execute(query)}


def load(conn: Connection, ids: list[int]) -> dict[StateKey, StoredState]:
    """The stored states of these devices' keys."""
    rows = conn.execute(select(alert_states).where(alert_states.c.device_id.in_(ids)))
    return {(r.rule, r.device_id, r.labels): StoredState._make(r) for r in rows}


# executemany binds each row's id to b_id and its values to v_<column> (a bind may not share a SET column's name)
_UPDATE = update(alert_states).where(alert_states.c.id == bindparam("b_id")).values(
    {c: bindparam(f"v_{c}") for c in STATE_COLUMNS}
)


def update_many(conn: Connection, updates: list[tuple[int, StateValues]]) -> None:
    """Write changed states, (row id, new values) each, in one statement."""
    if updates:
        conn.execute(_UPDATE, [{"b_id": row_id, **{f"v_{c}": v for c, v in values.items()}} for row_id, values in updates])


_UPSERTS: dict[str, Any] = {}  # one statement per dialect, built once (building it costs more than running it)


def upsert_many(conn: Connection, rows: list[tuple[StateKey, StateValues]]) -> None:
    """INSERT … ON CONFLICT on the state's unique key for many new keys, (key, values) each, in one statement
    (executemany), so two writers can never fail on the same new key.

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
    conn.execute(stmt, [{"rule": rule, "device_id": device_id, "labels": labels, **values}
                        for (rule, device_id, labels), values in rows])


def device_graph(conn: Connection) -> list[tuple[int, int | None, str]]:
    """(id, parent id, state) of the polled devices in a dependency: those behind a parent, and the parents. A device
    in none has no ancestor to be hidden by nor anyone behind it (a fleet without dependencies reads nothing here;
    every device's row was read before, on each batch of the writer with an alert open: O(fleet) per batch)."""
    parents = select(devices.c.parent_id).where(devices.c.parent_id.is_not(None))
    query = (
        select(devices.c.id, devices.c.parent_id, device_status.c.state)
        .join(device_status, device_status.c.device_id == devices.c.id)
        .where(devices.c.parent_id.is_not(None) | devices.c.id.in_(parents.scalar_subquery()))
    )
    return [(int(i), p, str(s)) for i, p, s in conn.execute(query)]
