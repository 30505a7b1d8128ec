"""Session checks for long-lived connections: a live stream polls `session_alive` and closes when it is False."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool

from server.services import Services
from server.store import sessions


def session_alive_sync(svc: Services, session_id: str) -> bool:
    """True while the session exists, is fully signed in and within its idle and absolute timeouts."""
    s = svc.settings
    with svc.reader.connect() as conn:
        return sessions.alive(conn, session_id, s.session_idle_minutes * 60, s.session_max_hours * 3600)


async def session_alive(svc: Services, session_id: str | None) -> bool:
    """The same check off the event loop; a bearer-token caller (no session id) stays alive."""
    if session_id is None:
        return True
    return await run_in_threadpool(session_alive_sync, svc, session_id)
