"""Received SNMP traps as stored: recorded per batch, listed newest first, forgotten after their retention."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select

from server.store.schema import devices, traps


def device_addresses(conn: Connection) -> list[tuple[int, str, str]]:
    """(id, name, address) of every device, to map a trap's source to its device."""
    return [(int(i), str(n), str(a)) for i, n, a in conn.execute(select(devices.c.id, devices.c.name, devices.c.address))]


def record(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Store a batch of traps (ts, source, device_id, name, oid, varbinds)."""
    if rows:
        conn.execute(insert(traps), rows)


def prune(conn: Connection, before: float) -> None:
    """Forget traps received before `before`."""
    conn.execute(delete(traps).where(traps.c.ts < before))


def recent(conn: Connection, device_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest traps first (unknown sources included when no device is given)."""
    query = select(traps).order_by(traps.c.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(traps.c.device_id == device_id)
    return [dict(r._mapping) for r in conn.execute(query)]
