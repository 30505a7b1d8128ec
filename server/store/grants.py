"""Which named permissions each user holds (rows of user_grants); who may hold what is decided in server.auth.grants."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import Connection, delete, insert, select

from server.store.tables_grants import user_grants


def of_user(conn: Connection, user_id: int) -> frozenset[str]:
    """The grants stored for one user."""
    rows = conn.execute(select(user_grants.c.name).where(user_grants.c.user_id == user_id))
    return frozenset(str(r.name) for r in rows)


def by_user(conn: Connection) -> dict[int, frozenset[str]]:
    """Every user's stored grants (users without any are left out)."""
    found: dict[int, set[str]] = {}
    for row in conn.execute(select(user_grants.c.user_id, user_grants.c.name)):
        found.setdefault(int(row.user_id), set()).add(str(row.name))
    return {user_id: frozenset(names) for user_id, names in found.items()}


def add(conn: Connection, user_id: int, names: Iterable[str], by: str) -> None:
    """Store new grants (the caller passes only names the user does not hold yet)."""
    now = time.time()
    for name in names:
        conn.execute(insert(user_grants).values(user_id=user_id, name=name, granted_at=now, granted_by=by[:64]))


def remove(conn: Connection, user_id: int, names: Iterable[str] | None = None) -> None:
    """Drop some grants of a user, or all of them (names=None)."""
    query = delete(user_grants).where(user_grants.c.user_id == user_id)
    if names is not None:
        query = query.where(user_grants.c.name.in_(list(names)))
    conn.execute(query)
