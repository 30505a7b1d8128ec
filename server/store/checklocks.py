"""Per-check PostgreSQL session locks of queue workers: a check never runs twice at once across workers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('pocketnoc-check:' || %s, 0))"
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended('pocketnoc-check:' || %s, 0))"


class CheckLocks:
    """A check never runs twice at once across workers: a PostgreSQL session lock per check in flight.

    All of a worker's locks live on one connection of its own, so a worker that dies (even by SIGKILL)
    frees them the moment PostgreSQL sees its connection close; nothing waits for a heartbeat. A
    machine that vanishes (power or network cut) closes nothing: the server's TCP keepalive on this
    connection (about four heartbeats, set per session) ends it and frees the locks.
    """

    def __init__(self, conninfo: str, keepalive: float = 5.0) -> None:
        self.conninfo = conninfo
        self.keepalive = str(max(1, round(keepalive)))
        self.held: dict[str, int] = {}  # check key -> the session (generation) its lock was taken on
        self.skipped = 0
        self._generation = 0
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._mutex = asyncio.Lock()

    async def _query(self, sql: str, key: str) -> bool:
        async with self._mutex:
            if self._conn is None or self._conn.closed:
                self.held.clear()  # a new session holds nothing
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=10)
                self._generation += 1
                await conn.execute(
                    "SELECT set_config('tcp_keepalives_idle', %s, false), set_config('tcp_keepalives_interval', %s, false), "
                    "set_config('tcp_keepalives_count', '3', false)",
                    (self.keepalive, self.keepalive),
                )
                self._conn = conn
            try:
                cur = await self._conn.execute(sql, (key,))
                row = await cur.fetchone()
            except psycopg.OperationalError:
                await self._conn.close()
                self._conn = None
                self.held.clear()
                raise
            return bool(row and row[0])

    async def acquire(self, key: str, wait: float = 0.0) -> int | None:
        """Take the check's lock: the session generation it was taken on (give it to release), or None if the check
        runs here or elsewhere (after waiting up to `wait` seconds for it)."""
        deadline = time.monotonic() + wait
        while True:
            if key not in self.held and await self._query(LOCK_SQL, key):  # held here: a session lock would let us in
                self.held[key] = self._generation
                return self._generation
            if time.monotonic() >= deadline:
                if key not in self.held:
                    self.skipped += 1
                return None
            await asyncio.sleep(0.2)

    async def release(self, key: str, generation: int | None = None) -> None:
        """Free the check's lock taken on session `generation` (None: whichever holds it). A lock lost with its
        session is not ours to free, even if a later run took the same key on the new session."""
        taken = self.held.get(key)
        if taken is None or (generation is not None and taken != generation):
            return
        del self.held[key]
        try:
            await self._query(UNLOCK_SQL, key)
        except psycopg.Error:
            pass  # the session is gone, and its locks with it

    async def close(self) -> None:
        """Close the lock connection (frees every lock)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self.held.clear()
