"""The meta table: small named values the install keeps (engine ids, VAPID keys, rollup marks, heartbeats)."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from server.store.schema import meta


def get(conn: Connection, key: str) -> str | None:
    """The value kept under `key`, or None."""
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
    return None if value is None else str(value)


def put(conn: Connection, key: str, value: str) -> None:
    """Keep `value` under `key` (insert or replace)."""
    if conn.execute(update(meta).where(meta.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(insert(meta).values(key=key, value=value))


def get_or_create(conn: Connection, key: str, make: str) -> str:
    """The value under `key`; `make` is kept and returned when there is none yet (call inside a write transaction)."""
    found = get(conn, key)
    if found is None:
        put(conn, key, make)
        return make
    return found
