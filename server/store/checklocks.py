"""Per-check PostgreSQL session locks of queue workers: a check never runs twice at once across workers."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import psycopg
from psycopg.types.json import Json

log = logging.getLogger("pocketnoc.worker")

LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('pocketnoc-check:' || %s, 0))"
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended('pocketnoc-check:' || %s, 0))"
# A batch's checks in one round trip each way.
LOCK_MANY_SQL = "SELECT k FROM unnest(%s::text[]) AS k WHERE pg_try_advisory_lock(hashtextextended('pocketnoc-check:' || k, 0))"
RELEASE_DELAY = 0.05
UNLOCK_MANY_SQL = "SELECT count(pg_advisory_unlock(hashtextextended('pocketnoc-check:' || k, 0))) FROM unnest(%s::text[]) AS k"
# What a check's next run needs (its counters, failure streak), stored before its lock is freed, so whichever worker
# takes the lock next finds it. Devices deleted meanwhile are skipped.
SAVE_HANDOFF_SQL = """
INSERT INTO check_handoff (device_id, check_name, state, ts)
SELECT k.device_id, k.check_name, k.state, extract(epoch FROM now())
FROM unnest(%s::int[], %s::text[], %s::json[]) AS k(device_id, check_name, state) JOIN devices d ON d.id = k.device_id
ON CONFLICT (device_id, check_name) DO UPDATE SET state = excluded.state, ts = excluded.ts
"""

Handoff = tuple[int, str, dict[str, object]]  # (device_id, check, state)


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
        self._to_release: dict[int, list[str]] = {}
        self._to_save: dict[int, dict[tuple[int, str], dict[str, object]]] = {}
        self._releaser: asyncio.Task[None] | None = None

    async def _query(self, sql: str, key: str) -> bool:
        rows = await self._rows(sql, (key,))
        return bool(rows and rows[0][0])

    async def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
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
                cur = await self._conn.execute(sql, params)
                return list(await cur.fetchall())
            except psycopg.OperationalError:
                await self._conn.close()
                self._conn = None
                self.held.clear()
                raise

    async def _rows_none(self, sql: str, params: tuple[object, ...]) -> None:
        """Run a statement that returns no rows, on the lock session (only while it is the session that holds them)."""
        async with self._mutex:
            if self._conn is None or self._conn.closed:
                raise psycopg.OperationalError("the lock session is gone")
            await self._conn.execute(sql, params)

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

    async def release(self, key: str, generation: int | None = None, handoff: Handoff | None = None) -> None:
        """Free the check's lock taken on session `generation` (None: whichever holds it), storing its hand-off first.
        A lock lost with its session is not ours to free, even if a later run took the same key on the new session
        (nor is the hand-off ours to store: that run's owner stores its own)."""
        taken = self.held.get(key)
        if taken is None or (generation is not None and taken != generation):
            return
        try:
            if handoff is not None:
                await self._save_handoffs(taken, {(handoff[0], handoff[1]): handoff[2]})
        finally:
            del self.held[key]
            try:
                await self._query(UNLOCK_SQL, key)
            except psycopg.Error:
                pass  # the session is gone, and its locks with it

    async def _save_handoffs(self, generation: int, states: dict[tuple[int, str], dict[str, object]]) -> None:
        """Store hand-offs on the lock session while it still holds their locks (a lost session: the locks went with
        it and another worker may run the check already, so its state is not written over)."""
        if not states or generation != self._generation:
            return
        keys = list(states)
        try:
            await self._rows_none(SAVE_HANDOFF_SQL, ([d for d, _ in keys], [c for _, c in keys],
                                                     [Json(states[k]) for k in keys]))  # fmt: skip
        except psycopg.Error as exc:
            log.warning("hand-off of %d checks not stored (their next run elsewhere starts cold): %s", len(keys), exc)

    async def acquire_many(self, keys: list[str]) -> tuple[int, set[str]]:
        """Take the locks of a batch's checks at once, without waiting: (session generation, the keys taken).
        A key held here already (an earlier batch still runs it) or elsewhere is not taken."""
        want = [k for k in dict.fromkeys(keys) if k not in self.held]
        if not want:
            return self._generation, set()
        got = {str(r[0]) for r in await self._rows(LOCK_MANY_SQL, (want,))}
        for key in got:
            self.held[key] = self._generation
        self.skipped += len(want) - len(got)
        return self._generation, got

    async def release_many(self, keys: set[str], generation: int) -> None:
        """Free the locks of a batch taken on session `generation` (those lost with an older session are not ours)."""
        mine = [k for k in keys if self.held.get(k) == generation]
        for key in mine:
            del self.held[key]
        if mine and generation == self._generation:
            try:
                await self._rows(UNLOCK_MANY_SQL, (mine,))
            except psycopg.Error:
                pass  # the session is gone, and its locks with it

    def release_soon(self, key: str, generation: int, handoff: Handoff | None = None) -> None:
        """Free a check's lock as its poll ends: at once here (a next run on this worker may lock it again: session
        locks count), in PostgreSQL with the others ending within RELEASE_DELAY, in one query, after their hand-offs
        are stored (one more)."""
        if self.held.get(key) != generation:
            return
        del self.held[key]
        self._to_release.setdefault(generation, []).append(key)
        if handoff is not None:
            self._to_save.setdefault(generation, {})[(handoff[0], handoff[1])] = handoff[2]
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(self._release_pending())

    async def _release_pending(self) -> None:
        while self._to_release:  # keys added while a release query runs are freed by the next round
            await asyncio.sleep(RELEASE_DELAY)
            pending, self._to_release = self._to_release, {}
            saves, self._to_save = self._to_save, {}
            for generation, keys in pending.items():
                if generation != self._generation:
                    continue  # taken on a session that is gone, and its locks with it
                await self._save_handoffs(generation, saves.get(generation, {}))
                try:
                    await self._rows(UNLOCK_MANY_SQL, (keys,))  # one unlock per release: a key locked twice is listed twice
                except psycopg.Error:
                    pass

    async def close(self) -> None:
        """Close the lock connection (frees every lock)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self.held.clear()
