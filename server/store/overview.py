"""Light reads for the phone pages: device rows without their big JSON columns, and the live-update cursor."""

from __future__ import annotations

import json
from typing import Any, NamedTuple, Protocol, TypedDict

from sqlalchemy import JSON, Connection, Integer, Text, bindparam, case, cast, func, literal, select, type_coerce
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ColumnElement

from server.store.dependents import OUTAGE, behind_outages
from server.store.schema import alert_events, alerts, device_status, devices, rollups, samples, series, state_events

ERROR_CHARS = 300  # a row shows one line of the last error: never load a 64 KB one for it
LIVE_BATCH = 500


class DeviceSummary(TypedDict):
    """A device as a list row shows it (the JSON device list and the pages)."""

    id: int
    name: str
    address: str
    kind: str | None
    state: str
    state_since: float | None
    tags: list[str]
    parent: str | None
    last_polled: float | None
    last_ok: float | None
    last_error: str | None
    poll_ms: float | None
    sys_name: str | None
    source: str
    enabled: bool


class ListedDevice(Protocol):
    """A device's columns and status as a list row is made from them (a device_views row, or one of device_rows)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def state_since(self) -> float | None: ...
    @property
    def last_polled(self) -> float | None: ...
    @property
    def last_ok(self) -> float | None: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def poll_ms(self) -> float | None: ...
    @property
    def source(self) -> str: ...
    @property
    def enabled(self) -> bool: ...


def summary(r: ListedDevice, kind: str | None, tags: list[str], parent: str | None, sys_name: str | None) -> DeviceSummary:
    """A device as a list row shows it; what its facts and parent give is worked out by the caller."""
    return DeviceSummary(
        id=r.id,
        name=r.name,
        address=r.address,
        kind=kind,
        state=r.state,
        state_since=r.state_since,
        tags=tags,
        parent=parent,
        last_polled=r.last_polled,
        last_ok=r.last_ok,
        last_error=r.last_error,
        poll_ms=r.poll_ms,
        sys_name=sys_name,
        source=r.source,
        enabled=bool(r.enabled),
    )


class DeviceListRow(DeviceSummary):
    """A list row, with the ancestor whose outage makes the device unreachable (None when there is none)."""

    behind: str | None


class DeviceChange(TypedDict):
    """A device's new state (live updates)."""

    id: int
    state: str


class AlertChange(TypedDict):
    """An alert that changed (live updates): its device, what happened and its severity."""

    id: int
    device: int
    kind: str
    severity: str


class LiveChanges(TypedDict):
    """Changes after a cursor, the cursor to ask from next, and whether more wait."""

    devices: list[DeviceChange]
    alerts: list[AlertChange]
    cursor: tuple[int, int]
    more: bool


def _fact(conn: Connection, key: str) -> Any:
    """One fact as JSON (`->`, not `->>`: a string with a lone surrogate escape must not break the read)."""
    path = f"$.{key}" if conn.dialect.name == "sqlite" else key
    return type_coerce(device_status.c.facts.op("->")(literal(path)), JSON)


STATE_RANK = {"down": 0, "unreachable": 1, "degraded": 2, "unknown": 3, "up": 4}  # device_state.STATES order


FACTS = ("sys_name", "hostname", "kind")


_STATEMENTS: dict[tuple[str, bool, bool], Any] = {}


def _query(conn: Connection, state: str, whole_facts: bool) -> Any:
    """The list statement, built once per dialect and shape (state, limit and offset are bound parameters)."""
    key = (conn.dialect.name, whole_facts, bool(state))
    if key in _STATEMENTS:
        return _STATEMENTS[key]
    parent = devices.alias("parent")
    name = devices.c.name.collate("C") if conn.dialect.name == "postgresql" else devices.c.name
    facts = [device_status.c.facts] if whole_facts else [_fact(conn, key).label(f"fact_{key}") for key in FACTS]
    query = (
        select(
            devices.c.id,
            devices.c.name,
            devices.c.address,
            devices.c.kind,
            devices.c.tags,
            parent.c.name.label("parent"),
            devices.c.source,
            devices.c.enabled,
            device_status.c.state,
            device_status.c.state_since,
            device_status.c.last_polled,
            device_status.c.last_ok,
            func.substr(device_status.c.last_error, 1, ERROR_CHARS).label("last_error"),
            device_status.c.poll_ms,
            *facts,
        )
        .join(device_status, device_status.c.device_id == devices.c.id)
        .outerjoin(parent, parent.c.id == devices.c.parent_id)
        .order_by(case(STATE_RANK, value=device_status.c.state, else_=9), name)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    if state:
        query = query.where(device_status.c.state == bindparam("state"))
    _STATEMENTS[key] = query
    return query


def device_rows(conn: Connection, state: str = "", limit: int | None = None, offset: int = 0) -> list[DeviceListRow]:
    """Devices as list rows, problems first then by name (the few facts a row shows are picked out by the database)."""
    # No limit: SQLite reads LIMIT -1 as "all", PostgreSQL LIMIT NULL.
    params: dict[str, int | str | None] = {"limit": limit if limit is not None else -1 if conn.dialect.name == "sqlite" else None}
    params["offset"] = offset
    if state:
        params["state"] = state
    try:
        rows = [(r, {key: getattr(r, f"fact_{key}") for key in FACTS}) for r in conn.execute(_query(conn, state, False), params)]
    except DBAPIError:
        # PostgreSQL refuses `->` on stored JSON it cannot decode (a lone surrogate escape written before
        # text was cleaned on write): read the whole facts column instead, once.
        conn.rollback()
        rows = [(r, r.facts if isinstance(r.facts, dict) else {}) for r in conn.execute(_query(conn, state, True), params)]
    behind = behind_outages(conn) if any(r.state in OUTAGE for r, _f in rows) else {}
    return [
        DeviceListRow(
            **summary(r, r.kind or _text(facts.get("kind")), [str(t) for t in (r.tags or []) if isinstance(t, str)], r.parent,
                      _text(facts.get("sys_name")) or _text(facts.get("hostname"))),
            behind=behind.get(r.id),  # unreachable because this ancestor is down
        )
        for r, facts in rows
    ]


def state_counts(conn: Connection) -> dict[str, int]:
    """How many devices are in each state."""
    query = select(device_status.c.state, func.count()).group_by(device_status.c.state)
    return {str(state): int(n) for state, n in conn.execute(query)}


def all_tags(conn: Connection) -> list[str]:
    """Every tag in use (each distinct tag list is decoded once, not each device's)."""
    found: set[str] = set()
    for (text,) in conn.execute(select(cast(devices.c.tags, Text)).distinct()):
        try:
            tags = json.loads(text or "[]")
        except ValueError:
            continue
        if isinstance(tags, list):
            found.update(t for t in tags if isinstance(t, str))
    return sorted(found)


def _text(value: object) -> str | None:
    return value[:ERROR_CHARS] if isinstance(value, str) and value else None


def live_cursor(conn: Connection) -> tuple[int, int]:
    """The newest device state event and alert event ids: anything above them is news."""
    state = conn.execute(select(func.max(state_events.c.id))).scalar()
    alert = conn.execute(select(func.max(alert_events.c.id))).scalar()
    return int(state or 0), int(alert or 0)


def changes_since(conn: Connection, cursor: tuple[int, int]) -> LiveChanges:
    """Device transitions and alert events after `cursor`, and the cursor to ask from next time."""
    state_after, alert_after = cursor
    transitions = list(
        conn.execute(
            select(state_events.c.id, state_events.c.device_id, state_events.c.new_state)
            .where(state_events.c.id > state_after)
            .order_by(state_events.c.id)
            .limit(LIVE_BATCH)
        )
    )
    events = list(
        conn.execute(
            select(alert_events.c.id, alert_events.c.alert_id, alert_events.c.kind, alerts.c.device_id, alerts.c.severity)
            .join(alerts, alerts.c.id == alert_events.c.alert_id)
            .where(alert_events.c.id > alert_after)
            .order_by(alert_events.c.id)
            .limit(LIVE_BATCH)
        )
    )
    device_states: dict[int, str] = {}
    for t in transitions:
        device_states[t.device_id] = t.new_state
    alert_changes: dict[int, AlertChange] = {}
    for e in events:
        alert_changes[e.alert_id] = {"id": e.alert_id, "device": e.device_id, "kind": e.kind, "severity": e.severity}
    return {
        "devices": [DeviceChange(id=k, state=v) for k, v in device_states.items()],
        "alerts": list(alert_changes.values()),
        "cursor": (
            transitions[-1].id if transitions else state_after,
            events[-1].id if events else alert_after,
        ),
        "more": len(transitions) == LIVE_BATCH or len(events) == LIVE_BATCH,
    }


Series = tuple[list[tuple[float, float]], float | None, float | None]


def series_points(
    conn: Connection,
    device_id: int,
    keys: list[tuple[str, str]],
    since: float,
    until: float,
    raw_hours: int,
    buckets: int = 300,
) -> dict[tuple[str, str], Series]:
    """For each (metric, labels) of a device: at most `buckets` averaged (ts, value) points and the true min and max.

    Two queries whatever the number of series; the database does the averaging.
    """
    wanted = set(keys)
    ids = {
        int(r.id): (r.metric, r.labels)
        for r in conn.execute(
            select(series.c.id, series.c.metric, series.c.labels).where(
                series.c.device_id == device_id, series.c.metric.in_(sorted({m for m, _ in wanted}))
            )
        )
        if (r.metric, r.labels) in wanted
    }
    out: dict[tuple[str, str], Series] = {key: ([], None, None) for key in keys}
    if not ids:
        return out
    width = max(1, int((until - since) // buckets))
    if until - since <= raw_hours * 3600:
        sid, ts, low, avg, high = samples.c.series_id, samples.c.ts, samples.c.value, samples.c.value, samples.c.value
        where: list[ColumnElement[bool]] = [sid.in_(list(ids))]
    else:
        sid, ts, low, avg, high = rollups.c.series_id, rollups.c.ts, rollups.c.vmin, rollups.c.vavg, rollups.c.vmax
        where = [sid.in_(list(ids)), rollups.c.resolution == (300 if until - since <= 30 * 86400 else 3600)]
    bucket = ts // width
    query = (
        select(sid, func.min(ts), func.avg(avg), func.min(low), func.max(high))
        .where(*where, ts >= int(since), ts <= int(until))
        .group_by(sid, bucket)
        .order_by(sid, bucket)
    )
    found: dict[int, list[tuple[float, float, float, float]]] = {}
    for series_id, t, v, lo, hi in conn.execute(query):
        found.setdefault(int(series_id), []).append((float(t), float(v), float(lo), float(hi)))
    for series_id, rows in found.items():
        out[ids[series_id]] = ([(t, v) for t, v, _, _ in rows], min(r[2] for r in rows), max(r[3] for r in rows))
    return out


class DeviceMetrics(NamedTuple):
    """A device's name, state and latest samples per check (what /metrics exposes)."""

    name: str
    state: str
    metrics: dict[str, list[list[Any]]]


def latest_metrics(conn: Connection) -> list[DeviceMetrics]:
    """Every polled device with its state and the latest samples of each check."""
    rows = conn.execute(
        select(devices.c.name, device_status.c.state, device_status.c.metrics).join(
            device_status, device_status.c.device_id == devices.c.id
        )
    )
    return [DeviceMetrics(name, state, metrics or {}) for name, state, metrics in rows]


def last_update(conn: Connection) -> tuple[float | None, int]:
    """The newest poll result of enabled devices, and how many enabled devices there are."""
    row = conn.execute(
        select(func.max(device_status.c.last_polled), func.count(devices.c.id))
        .select_from(devices)
        .outerjoin(device_status, device_status.c.device_id == devices.c.id)
        .where(devices.c.enabled.is_(True))
    ).first()
    if row is None:
        return None, 0
    return (float(row[0]) if row[0] is not None else None), int(row[1] or 0)
