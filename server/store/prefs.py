"""Per-user display preferences: the time zone every time on a page is shown in."""

from __future__ import annotations

import time
from typing import NamedTuple

from sqlalchemy import Connection, delete, insert, select

from server.store.schema import user_prefs


class TimeZonePref(NamedTuple):
    """A user's time zone, and whether it came from the browser (auto) rather than the account page."""

    tz: str
    auto: bool


def get_tz(conn: Connection, user_id: int) -> TimeZonePref | None:
    """The stored time zone of a user, or None before the first visit set one."""
    row = conn.execute(select(user_prefs.c.tz, user_prefs.c.tz_auto).where(user_prefs.c.user_id == user_id)).first()
    return TimeZonePref(row.tz, bool(row.tz_auto)) if row else None


def set_tz(conn: Connection, user_id: int, tz: str, auto: bool) -> None:
    """Store a user's time zone (validated by the caller)."""
    conn.execute(delete(user_prefs).where(user_prefs.c.user_id == user_id))
    conn.execute(insert(user_prefs).values(user_id=user_id, tz=tz, tz_auto=auto, updated_at=time.time()))


def clear_tz(conn: Connection, user_id: int) -> None:
    """Forget a user's time zone: the browser's is taken again on the next page."""
    conn.execute(delete(user_prefs).where(user_prefs.c.user_id == user_id))
