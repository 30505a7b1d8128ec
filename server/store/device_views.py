"""The reads behind the device list and a device's page: rows of devices with their status, children, changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, select

from server.store.jsontypes import JsonObject, JsonValue
from server.store.schema import device_status, devices, state_events


@dataclass(frozen=True, slots=True)
class DeviceStatusRow:
    """A polled device with its status: inventory columns, state, last poll and its facts."""

    id: int
    name: str
    address: str
    kind: str | None
    tags: list[str] | None
    parent_id: int | None
    source: str
    enabled: bool
    interval: int
    state: str
    state_since: float | None
    last_polled: float | None
    last_ok: float | None
    last_error: str | None
    poll_ms: float | None
    facts: JsonObject | None


@dataclass(frozen=True, slots=True)
class DeviceDetailRow(DeviceStatusRow):
    """A device's status row plus its last poll's tables, checks and latest metrics, and its (public) spec."""

    tables: JsonObject | None
    checks: dict[str, JsonObject] | None
    metrics: dict[str, list[list[JsonValue]]] | None  # per check: [metric, labels key, value] rows
    spec: JsonObject | None


class StateChange(NamedTuple):
    """One state change of a device."""

    id: int
    device_id: int
    ts: float
    old_state: str
    new_state: str
    reason: str | None


def _base_query() -> Any:
    return select(
        devices.c.id,
        devices.c.name,
        devices.c.address,
        devices.c.kind,
        devices.c.tags,
        devices.c.parent_id,
        devices.c.source,
        devices.c.enabled,
        devices.c.interval,
        device_status.c.state,
        device_status.c.state_since,
        device_status.c.last_polled,
        device_status.c.last_ok,
        device_status.c.last_error,
        device_status.c.poll_ms,
        device_status.c.facts,
    ).join(device_status, device_status.c.device_id == devices.c.id)


def summaries(conn: Connection) -> list[DeviceStatusRow]:
    """Every polled device with its status (id, name, address, kind, tags, parent, state, last poll, facts ...)."""
    return [DeviceStatusRow(**r._mapping) for r in conn.execute(_base_query())]


def detail(conn: Connection, device_id: int) -> DeviceDetailRow | None:
    """One device's summary row plus its tables, checks, latest metrics and spec; None when there is none."""
    query = (
        _base_query()
        .add_columns(device_status.c.tables, device_status.c.checks, device_status.c.metrics, devices.c.spec)
        .where(devices.c.id == device_id)
    )
    row = conn.execute(query).first()
    return DeviceDetailRow(**row._mapping) if row is not None else None


def name_of(conn: Connection, device_id: int) -> str | None:
    """A device's name, or None."""
    found = conn.execute(select(devices.c.name).where(devices.c.id == device_id)).scalar()
    return None if found is None else str(found)


def exists(conn: Connection, device_id: int) -> bool:
    """Whether there is such a device."""
    return conn.execute(select(devices.c.id).where(devices.c.id == device_id)).first() is not None


def children(conn: Connection, device_id: int) -> list[tuple[int, str]]:
    """(id, name) of the devices whose parent this one is."""
    query = select(devices.c.id, devices.c.name).where(devices.c.parent_id == device_id)
    return [(int(i), str(n)) for i, n in conn.execute(query)]


def recent_changes(conn: Connection, device_id: int, limit: int = 20) -> list[StateChange]:
    """The device's latest state changes (ts, old_state, new_state, reason), newest first."""
    query = select(state_events).where(state_events.c.device_id == device_id).order_by(state_events.c.id.desc()).limit(limit)
    return [StateChange(*r) for r in conn.execute(query)]
