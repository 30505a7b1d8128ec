"""User rows as account management changes them (creation, lookup and tokens live in store.accounts)."""

from __future__ import annotations

from sqlalchemy import Connection, func, select, update

from server.store.schema import users


def password_hash(conn: Connection, user_id: int) -> str | None:
    """The stored argon2 hash of a user's password, or None."""
    stored = conn.execute(select(users.c.password_hash).where(users.c.id == user_id)).scalar()
    return str(stored) if stored else None


def enabled_admins(conn: Connection) -> int:
    """How many admins can sign in."""
    query = select(func.count()).select_from(users).where(users.c.role == "admin", users.c.disabled.is_(False))
    return int(conn.execute(query).scalar() or 0)


def set_role(conn: Connection, user_id: int, role: str) -> None:
    """Store a user's role."""
    conn.execute(update(users).where(users.c.id == user_id).values(role=role))


def set_disabled(conn: Connection, user_id: int, disabled: bool) -> None:
    """Store whether a user is disabled."""
    conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
