"""Received SNMP traps as stored: recorded per batch, listed newest first, forgotten after their retention."""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import Connection, delete, insert, select

from server.store.jsontypes import JsonValue
from server.store.schema import devices, traps


class NewTrap(TypedDict):
    """A received trap: when, from where (its device when known), its name and OID, its varbinds as JSON."""

    ts: float
    source: str
    device_id: int | None
    name: str | None
    oid: str
    varbinds: list[list[JsonValue]]


class TrapRow(NewTrap):
    """A stored trap."""

    id: int


def device_addresses(conn: Connection) -> list[tuple[int, str, str]]:
    """(id, name, address) of every device, to map a trap's source to its device."""
    return [(int(i), str(n), str(a)) for i, n, a in conn.execute(select(devices.c.id, devices.c.name, devices.c.address))]


def record(conn: Connection, rows: list[NewTrap]) -> None:
    """Store a batch of traps (ts, source, device_id, name, oid, varbinds)."""
    if rows:
        conn.execute(insert(traps), rows)


def prune(conn: Connection, before: float) -> None:
    """Forget traps received before `before`."""
    conn.execute(delete(traps).where(traps.c.ts < before))


def recent(conn: Connection, device_id: int | None = None, limit: int = 100) -> list[TrapRow]:
    """Newest traps first (unknown sources included when no device is given)."""
    query = select(traps).order_by(traps.c.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(traps.c.device_id == device_id)
    return [
        TrapRow(id=r.id, ts=r.ts, source=r.source, device_id=r.device_id, name=r.name, oid=r.oid, varbinds=r.varbinds)
        for r in conn.execute(query)
    ]
