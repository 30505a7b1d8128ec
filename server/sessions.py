"""Checks for long-lived connections: a live stream polls `session_alive` and closes when it is False."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from server.services import Services
from server.store import accounts, sessions

if TYPE_CHECKING:
    from server.auth import Principal


def session_alive_sync(svc: Services, session_id: str) -> bool:
    """True while the session exists, is fully signed in and within its idle and absolute timeouts."""
    s = svc.settings
    with svc.reader.connect() as conn:
        return sessions.alive(conn, session_id, s.session_idle_minutes * 60, s.session_max_hours * 3600)


def caller_alive_sync(svc: Services, who: Principal) -> bool:
    """The caller's session is alive, or their bearer token is still valid and its user enabled."""
    if who.session_id is not None:
        return session_alive_sync(svc, who.session_id)
    if who.token_hash is not None:
        with svc.reader.connect() as conn:
            return accounts.token_alive(conn, who.token_hash)
    return False


async def session_alive(svc: Services, who: Principal) -> bool:
    """The same check off the event loop."""
    return await run_in_threadpool(caller_alive_sync, svc, who)
