"""Directory rows: each directory's settings and its sealed bind password (the service seals and unseals)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from server.store.jsontypes import JsonObject
from server.store.tables_directories import directories


@dataclass(frozen=True, slots=True)
class DirectoryRow:
    """A stored directory: settings (no secret), the sealed bind password, where it came from."""

    id: int
    name: str
    source: str
    spec: JsonObject
    secret: bytes | None
    updated_at: float
    updated_by: str | None


def _row(r: Any) -> DirectoryRow:
    return DirectoryRow(int(r.id), str(r.name), str(r.source), dict(r.spec), bytes(r.secret) if r.secret else None,
                        float(r.updated_at), r.updated_by)


def list_rows(conn: Connection) -> list[DirectoryRow]:
    """Every directory by name."""
    return [_row(r) for r in conn.execute(select(directories).order_by(directories.c.name))]


def get_row(conn: Connection, name: str) -> DirectoryRow | None:
    """One directory by name."""
    found = conn.execute(select(directories).where(directories.c.name == name)).first()
    return _row(found) if found else None


def save(conn: Connection, name: str, source: str, spec: JsonObject, secret: bytes | None, by: str | None) -> None:
    """Insert or replace a directory by name (secret None on an update keeps the stored one)."""
    values: dict[str, object] = {"source": source, "spec": spec, "updated_at": time.time(), "updated_by": by}
    if secret is not None:
        values["secret"] = secret
    if get_row(conn, name) is None:
        conn.execute(insert(directories).values(name=name, **values))
    else:
        conn.execute(update(directories).where(directories.c.name == name).values(**values))


def remove(conn: Connection, name: str) -> bool:
    """Delete a directory; False when there was none."""
    return bool(conn.execute(delete(directories).where(directories.c.name == name)).rowcount)
