"""Checks for long-lived connections: a live stream polls `session_alive` and closes when it is False."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from server.runtime import Services
from server.store import accounts, sessions

# A live stream of a session that ended (sign-out, password change, disable...) or a revoked token stops within this.
SESSION_CHECK_SECONDS = 15.0

if TYPE_CHECKING:
    from server.auth.access import Principal


def caller_alive_sync(svc: Services, who: Principal) -> bool:
    """The caller's session exists, is fully signed in and within its idle and absolute timeouts; or their bearer
    token is still valid and its user enabled."""
    s = svc.settings
    with svc.reader.connect() as conn:
        if who.session_id is not None:
            touches = svc.storage.session_touches if svc.storage is not None else None  # held while the disk is full
            return sessions.alive(conn, who.session_id, s.session_idle_minutes * 60, s.session_max_hours * 3600, touches)
        return who.token_hash is not None and accounts.token_alive(conn, who.token_hash)


async def session_alive(svc: Services, who: Principal) -> bool:
    """The same check off the event loop."""
    return await run_in_threadpool(caller_alive_sync, svc, who)
