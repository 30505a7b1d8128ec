"""Alert rules added through the API (the rules file is read by server.alerts.rules, not stored)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, insert, select

from server.store.jsontypes import JsonObject
from server.store.schema import alert_rules


def definitions(conn: Connection) -> list[JsonObject]:
    """Every API-added rule's definition, oldest first."""
    return [dict(d) for d in conn.execute(select(alert_rules.c.definition).order_by(alert_rules.c.id)).scalars()]


def names(conn: Connection) -> set[str]:
    """Names of the rules added through the API."""
    return set(conn.execute(select(alert_rules.c.name)).scalars())


def add(conn: Connection, name: str, definition: JsonObject, created_by: str, now: float) -> None:
    """Store an API rule."""
    conn.execute(insert(alert_rules).values(name=name, definition=definition, created_by=created_by, updated_at=now))


def remove(conn: Connection, name: str) -> bool:
    """Remove an API rule; False when there is none of that name."""
    return bool(conn.execute(delete(alert_rules).where(alert_rules.c.name == name)).rowcount)
