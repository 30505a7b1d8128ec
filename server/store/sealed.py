"""Every value sealed with the secret box, found and re-sealed in one place (for the key check and rotation).

Every column sealed with the secret box is listed in SEALED_COLUMNS; a canary in the `meta` table tells a
wrong key from an empty database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from sqlalchemy import Column, Connection, Table, insert, select, update

from server.store.schema import meta, metadata

CANARY_KEY = "secret_key_check"
# Every (table, column) sealed with the secret box: add one here when a table starts keeping sealed secrets
# (tests/server/test_security_keyrotation.py fails on a sealed-looking column missing here).
SEALED_COLUMNS: list[tuple[str, str]] = [
    ("devices", "secrets"),
    ("users", "totp_secret"),
    ("users", "totp_pending"),
    ("notify_channels", "secret"),
    ("push_subscriptions", "secret"),
    ("discovery_runs", "secrets"),  # the credentials a discovery run tries
    ("directories", "secret"),
    ("terminal_chunks", "data"),
]
# Keys of the `meta` table whose values are sealed tokens (text).
SEALED_META: list[str] = [CANARY_KEY, "vapid_private_key"]


def sealed_columns() -> list[tuple[Table, Column[Any], Column[Any]]]:
    """(table, primary key, column) of every sealed column that exists in this schema."""
    found = []
    for table_name, column_name in SEALED_COLUMNS:
        table = metadata.tables.get(table_name)
        if table is not None and column_name in table.c:
            (pk,) = table.primary_key.columns
            found.append((table, pk, table.c[column_name]))
    return found


class SealedValue(NamedTuple):
    """Where one sealed value lives (table, primary key column, column, row id) and the sealed token itself."""

    table: Table
    pk: Column[object]
    column: Column[object]
    row_id: int | str
    token: bytes


def tokens(conn: Connection) -> list[SealedValue]:
    """Every sealed value but the canary."""
    found = []
    for table, pk, column in sealed_columns():
        for row in conn.execute(select(pk, column).where(column.is_not(None))):
            found.append(SealedValue(table, pk, column, row[0], bytes(row[1])))
    for row in conn.execute(select(meta.c.key, meta.c.value).where(meta.c.key.in_(SEALED_META), meta.c.key != CANARY_KEY)):
        if row.value:
            found.append(SealedValue(meta, meta.c.key, meta.c.value, str(row.key), str(row.value).encode()))
    return found


def canary(conn: Connection) -> bytes | None:
    """The sealed canary, if the database has one."""
    value = conn.execute(select(meta.c.value).where(meta.c.key == CANARY_KEY)).scalar()
    return str(value).encode() if value else None


def reseal(conn: Connection, change: Callable[[bytes], bytes]) -> int:
    """Replace every sealed value (the canary too) by change(value); returns how many."""
    count = 0
    for table, pk, column, row_id, token in tokens(conn):
        sealed = change(token)
        value: bytes | str = sealed.decode() if table is meta else sealed  # meta values are text
        conn.execute(update(table).where(pk == row_id).values({column.name: value}))
        count += 1
    found = canary(conn)
    if found is not None:
        conn.execute(update(meta).where(meta.c.key == CANARY_KEY).values(value=change(found).decode()))
        count += 1
    return count


def write_canary(conn: Connection, sealed: str) -> None:
    """Record the canary (the first key check of a new database)."""
    conn.execute(insert(meta).values(key=CANARY_KEY, value=sealed))
