"""Per-check session locks against the real PostgreSQL: a stale release never frees a lock a later run took."""

from __future__ import annotations

import psycopg
import pytest

from server.store.checklocks import CheckLocks


async def test_a_release_from_a_lost_session_does_not_free_the_new_sessions_lock(pg_url: str) -> None:
    mine, other = CheckLocks(pg_url), CheckLocks(pg_url)
    try:
        first = await mine.acquire("7:snmp")
        assert first is not None and await other.acquire("7:snmp") is None  # one holder at a time
        assert mine._conn is not None
        with psycopg.connect(pg_url, autocommit=True) as admin:  # PostgreSQL cuts the lock session
            admin.execute("SELECT pg_terminate_backend(%s)", (mine._conn.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError):
            await mine.acquire("8:snmp")  # the loss is noticed: the old session's locks are gone with it
        second = await mine.acquire("7:snmp")  # a later run of the same check, on a new session
        assert second is not None and second != first
        await mine.release("7:snmp", first)  # the first run ends late: not its lock to free any more
        assert await other.acquire("7:snmp") is None
        await mine.release("7:snmp", second)
        assert await other.acquire("7:snmp") is not None
    finally:
        await mine.close()
        await other.close()
