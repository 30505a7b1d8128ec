"""The meta table: small named values the install keeps (engine ids, VAPID keys, rollup marks, heartbeats)."""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from server.store.db import insert_ignore
from server.store.schema import meta


def get(conn: Connection, key: str) -> str | None:
    """The value kept under `key`, or None."""
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
    return None if value is None else str(value)


def put(conn: Connection, key: str, value: str) -> None:
    """Keep `value` under `key` (insert or replace; two processes putting one new key at once both succeed)."""
    insert_ignore(conn, meta, [{"key": key, "value": value}])
    conn.execute(update(meta).where(meta.c.key == key).values(value=value))


def get_or_create(conn: Connection, key: str, make: str) -> str:
    """The value under `key`; `make` is kept and returned when there is none yet (call inside a write transaction).

    Two processes starting together (serve processes on one PostgreSQL) may both find no value: the insert skips a
    key the other has just kept, and both return the one value that was kept first.
    """
    found = get(conn, key)
    if found is None:
        insert_ignore(conn, meta, [{"key": key, "value": make}])
        found = get(conn, key)
    return make if found is None else found
