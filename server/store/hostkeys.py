"""SSH host keys an admin enrolled (trust on first use, confirmed by a person), per device."""

from __future__ import annotations

import time
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import Connection, delete, insert, select

from server.store.schema import device_status, devices, host_keys


def enrolled(conn: Connection, device_id: int | None = None) -> dict[int, tuple[str, ...]]:
    """Every device's enrolled key lines (or one device's)."""
    out: dict[int, list[str]] = {}
    query = select(host_keys.c.device_id, host_keys.c.key_line).order_by(host_keys.c.id)
    if device_id is not None:
        query = query.where(host_keys.c.device_id == device_id)
    for owner, key_line in conn.execute(query):
        out.setdefault(owner, []).append(key_line)
    return {k: tuple(v) for k, v in out.items()}


class HostKeyView(TypedDict):
    """An enrolled key as the API and the phone page show it."""

    id: int
    key_type: str
    fingerprint: str
    added_by: str | None
    added_at: float


def list_keys(conn: Connection, device_id: int) -> list[HostKeyView]:
    """One device's enrolled keys."""
    rows = conn.execute(select(host_keys).where(host_keys.c.device_id == device_id).order_by(host_keys.c.id))
    return [
        {
            "id": r.id,
            "key_type": r.key_line.split()[0],
            "fingerprint": r.fingerprint,
            "added_by": r.added_by,
            "added_at": r.added_at,
        }
        for r in rows
    ]


def trust(conn: Connection, device_id: int, key_line: str, fingerprint: str, user: str) -> bool:
    """Pin a key for a device; False if it was already pinned."""
    exists = conn.execute(
        select(host_keys.c.id).where(host_keys.c.device_id == device_id, host_keys.c.key_line == key_line)
    ).first()
    if exists:
        return False
    conn.execute(
        insert(host_keys).values(
            device_id=device_id, key_line=key_line, fingerprint=fingerprint, added_by=user, added_at=time.time()
        )
    )
    return True


def remove(conn: Connection, device_id: int, key_id: int) -> bool:
    """Unpin one enrolled key."""
    done = conn.execute(delete(host_keys).where(host_keys.c.device_id == device_id, host_keys.c.id == key_id))
    return bool(done.rowcount)


class DeviceFacts(NamedTuple):
    """A device's name and its last facts."""

    name: str
    facts: dict[str, Any]


def device_facts(conn: Connection, device_id: int) -> DeviceFacts | None:
    """The device's name and last facts (empty before its first poll); None when there is no such device."""
    row = conn.execute(
        select(devices.c.name, device_status.c.facts)
        .outerjoin(device_status, device_status.c.device_id == devices.c.id)
        .where(devices.c.id == device_id)
    ).first()
    return None if row is None else DeviceFacts(str(row.name), dict(row.facts or {}))


def device_name(conn: Connection, device_id: int) -> str:
    """The device's name ('' when there is no such device)."""
    return str(conn.execute(select(devices.c.name).where(devices.c.id == device_id)).scalar() or "")
