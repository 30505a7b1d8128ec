"""Per-check PostgreSQL session locks of queue workers: a check never runs twice at once across workers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psycopg

from server.store.db import json_text

log = logging.getLogger("pocketnoc.worker")

LOCK_SQL = "SELECT pg_try_advisory_lock(hashtextextended('pocketnoc-check:' || %s, 0))"
UNLOCK_SQL = "SELECT pg_advisory_unlock(hashtextextended('pocketnoc-check:' || %s, 0))"
# A batch's checks in one round trip each way.
LOCK_MANY_SQL = "SELECT k FROM unnest(%s::text[]) AS k WHERE pg_try_advisory_lock(hashtextextended('pocketnoc-check:' || k, 0))"
RELEASE_DELAY = 0.05
UNLOCK_MANY_SQL = "SELECT count(pg_advisory_unlock(hashtextextended('pocketnoc-check:' || k, 0))) FROM unnest(%s::text[]) AS k"
# What a check's next run needs (its counters, failure streak), stored before its lock is freed, so whichever worker
# takes the lock next finds it. Devices deleted meanwhile are skipped.
# One JSON document [[device_id, check, state], ...]: a json[] array parameter was escaped element by element in
# Python (psycopg's array dumper, a regular expression per element) and cost more than the states themselves.
SAVE_HANDOFF_SQL = """
INSERT INTO check_handoff (device_id, check_name, state, ts)
SELECT d.id, k->>1, k->2, extract(epoch FROM now())
FROM json_array_elements(%s::json) AS k JOIN devices d ON d.id = (k->>0)::int
ON CONFLICT (device_id, check_name) DO UPDATE SET state = excluded.state, ts = excluded.ts
"""

PING_EVERY = 1.0  # while polls hold locks, the lock session is looked at this often: a lost one cancels them

Handoff = tuple[int, str, dict[str, object]]  # (device_id, check, state)


class Hold:
    """One taking of check locks (one key, or a batch's keys) on one session: its own count of each lock.

    PostgreSQL session locks are counted per session, and two runs of one check on this worker (a batch's slot
    that just ended and a 'poll now' or a later slot taking it at once) may both count on it; each frees only
    the count it took, so one run's end never frees the lock another run of this worker still polls under.
    """

    __slots__ = ("generation",)

    def __init__(self, generation: int) -> None:
        self.generation = generation  # the lock session it was taken on

    def __repr__(self) -> str:
        return f"Hold(session {self.generation}, #{id(self):x})"


class LockLost(Exception):
    """The lock session of a running poll was lost: another worker may run its check now, so the poll was cut."""


class Guard:
    """`async with locks.guard(hold)` around a poll: the poll is cancelled (LockLost) if its lock session is lost."""

    def __init__(self, locks: CheckLocks, hold: Hold) -> None:
        self.locks, self.hold = locks, hold
        self.task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> Guard:
        if self.locks.lost(self.hold):
            raise LockLost(f"the lock session {self.hold.generation} is gone")
        self.task = asyncio.current_task()
        if self.task is not None:
            self.locks.guarded[self.task] = self.hold
            self.locks.watch()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        task = self.task
        if task is None:
            return
        self.locks.guarded.pop(task, None)
        if task in self.locks.cut:
            self.locks.cut.discard(task)
            if task.uncancel() == 0 and kind is asyncio.CancelledError:  # our cancel alone, not one of the run itself
                raise LockLost(f"the lock session {self.hold.generation} was lost during the poll") from exc


def _noticed(ping: asyncio.Future[None]) -> None:
    """A failed look at the lock session was dealt with where it failed (the polls under it are cut)."""
    if not ping.cancelled():
        ping.exception()


class CheckLocks:
    """A check never runs twice at once across workers: a PostgreSQL session lock per check in flight.

    All of a worker's locks live on one connection of its own, so a worker that dies (even by SIGKILL)
    frees them the moment PostgreSQL sees its connection close; nothing waits for a heartbeat. A
    machine that vanishes (power or network cut) closes nothing: the server's TCP keepalive on this
    connection (about four heartbeats, set per session) ends it and frees the locks.

    The polls running under a lock are guarded (`guard`): the session is looked at every PING_EVERY
    seconds while they run, and when it is lost (ended by PostgreSQL or by the leader's fencing, or silent
    for two heartbeats: the leader fences a worker silent for three, the server's keepalive gives up after
    about four) they are cut, so no poll goes on believing it holds a lock another worker may have taken.
    """

    def __init__(self, conninfo: str, keepalive: float = 5.0) -> None:
        self.conninfo = conninfo
        self.keepalive = str(max(1, round(keepalive)))
        self.silent_after = 2.0 * max(1, round(keepalive))  # before the leader's fence (3) or the keepalive (~4)
        self._abandoned = 0  # a session that went silent: given up here, closed once it answers (or fails)
        self.held: dict[str, Hold] = {}  # check key -> the taking it runs under on this worker
        self.skipped = 0
        self._generation = 0
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._mutex = asyncio.Lock()
        self._to_release: dict[int, list[str]] = {}
        self._to_save: dict[int, dict[tuple[int, str], dict[str, object]]] = {}
        self._releaser: asyncio.Task[None] | None = None
        self.guarded: dict[asyncio.Task[Any], Hold] = {}  # polls running under a lock, and the taking they run under
        self.cut: set[asyncio.Task[Any]] = set()  # those cancelled because their lock session was lost
        self._watcher: asyncio.Task[None] | None = None
        # Told the checks whose hand-off was not stored (a failed write, a lost session): their next run stores its own.
        self.on_unsaved: Callable[[list[str]], None] = lambda _keys: None

    def lost(self, hold: Hold) -> bool:
        """Whether the session `hold` was taken on is gone (its locks with it)."""
        return hold.generation != self._generation or not self._usable()

    def _usable(self) -> bool:
        return self._conn is not None and not self._conn.closed and self._abandoned != self._generation

    def guard(self, hold: Hold) -> Guard:
        """Run a poll under `hold`: cut (LockLost) the moment its lock session is seen lost."""
        return Guard(self, hold)

    def _session_lost(self) -> None:
        """The lock session is gone, and its locks with it (another worker may take them now): nothing here holds
        them any more, and the polls running under them are cancelled (each raises LockLost)."""
        self.held.clear()
        for task, hold in list(self.guarded.items()):
            if hold.generation == self._generation and task not in self.cut and not task.done():
                log.warning("the check lock session was lost: a poll running under it is cancelled")
                self.cut.add(task)
                task.cancel()

    def watch(self) -> None:
        """Look at the lock session every PING_EVERY seconds while polls run under its locks."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="pocketnoc-check-locks")

    async def _watch(self) -> None:
        while self.guarded:
            await asyncio.sleep(PING_EVERY)
            generation = self._generation
            if not any(hold.generation == generation for hold in self.guarded.values()):
                continue  # none of them under the current session (they are being cut)
            ping = asyncio.ensure_future(self._rows_none("SELECT 1", (), session=generation))
            ping.add_done_callback(_noticed)
            done, _ = await asyncio.wait({ping}, timeout=self.silent_after)
            if not done and generation == self._generation:
                log.warning("the check lock session has not answered for %.0fs: the polls under it are cut (the server "
                            "frees its locks soon)", self.silent_after)  # fmt: skip
                self._abandoned = generation
                self._session_lost()
                await asyncio.wait({ping})  # it answers (or fails) at last: closed then, and its locks with it
                async with self._mutex:
                    if self._conn is not None and self._abandoned == self._generation:
                        await self._conn.close()

    async def _query(self, sql: str, key: str, session: int | None = None) -> bool:
        rows = await self._rows(sql, (key,), session)
        return bool(rows and rows[0][0])

    async def _rows(self, sql: str, params: tuple[object, ...], session: int | None = None) -> list[tuple[Any, ...]]:
        """Run a query on the lock session, opening a new one if it is gone; with `session`, only on that session
        (an unlock meant for a lost session must not reach a new one, where this worker may hold the key again)."""
        async with self._mutex:
            if session is not None and (session != self._generation or not self._usable()):
                return []
            if self._conn is None or not self._usable():
                if self._conn is not None:  # given up while silent: closed now that it answers (its locks go)
                    await self._conn.close()
                self._session_lost()  # a new session holds nothing
                conn = await psycopg.AsyncConnection.connect(  # the client's keepalive too: a cut link fails a query
                    self.conninfo, autocommit=True, connect_timeout=10, keepalives=1, keepalives_idle=self.keepalive,
                    keepalives_interval=self.keepalive, keepalives_count=3,
                )  # fmt: skip
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
                self._session_lost()
                raise

    async def _rows_none(self, sql: str, params: tuple[object, ...], session: int | None = None) -> None:
        """Run a statement that returns no rows, on the lock session (only while it is the session that holds them)."""
        async with self._mutex:
            if session is not None and session != self._generation:
                raise psycopg.OperationalError("the lock session is gone")
            if self._conn is None or not self._usable():
                self._session_lost()
                raise psycopg.OperationalError("the lock session is gone")
            try:
                await self._conn.execute(sql, params)
            except psycopg.OperationalError:
                await self._conn.close()
                self._conn = None
                self._session_lost()
                raise

    async def acquire(self, key: str, wait: float = 0.0) -> Hold | None:
        """Take the check's lock: the taking (give it to release), or None if the check runs here or elsewhere (after
        waiting up to `wait` seconds for it)."""
        deadline = time.monotonic() + wait
        while True:
            if key not in self.held and await self._query(LOCK_SQL, key):  # held here: a session lock would let us in
                hold = Hold(self._generation)  # the session the query ran on (no await since)
                if self._keep(hold, [key]):
                    return hold
            if time.monotonic() >= deadline:
                if key not in self.held:
                    self.skipped += 1
                return None
            await asyncio.sleep(0.2)

    def _keep(self, hold: Hold, keys: list[str]) -> set[str]:
        """Record the keys just locked under `hold`; one another task of this worker took meanwhile (both asked at
        once, and session locks count) stays that task's: the count taken here is freed again."""
        kept = {k for k in keys if k not in self.held}
        for key in kept:
            self.held[key] = hold
        extra = [k for k in keys if k not in kept]
        if extra:
            self._to_release.setdefault(hold.generation, []).extend(extra)
            self._start_releaser()
        return kept

    async def release(self, key: str, hold: Hold | None = None, handoff: Handoff | None = None) -> None:
        """Free the check's lock taken by `hold` (None: whichever holds it here), storing its hand-off first.
        A lock lost with its session is not ours to free, even if a later run took the same key on the new session,
        nor is one another run of this worker took since (nor is the hand-off ours to store: that run's owner
        stores its own)."""
        taken = self.held.get(key)
        if taken is None or (hold is not None and taken is not hold):
            return
        try:
            if handoff is not None:
                self._to_save.get(taken.generation, {}).pop((handoff[0], handoff[1]), None)  # an earlier run's: older
                await self._save_handoffs(taken.generation, {(handoff[0], handoff[1]): handoff[2]})
        finally:
            if self.held.get(key) is taken:
                del self.held[key]
                try:
                    await self._query(UNLOCK_SQL, key, session=taken.generation)
                except psycopg.Error:
                    pass  # the session is gone, and its locks with it

    async def _save_handoffs(self, generation: int, states: dict[tuple[int, str], dict[str, object]]) -> None:
        """Store hand-offs on the lock session while it still holds their locks (a lost session: the locks went with
        it and another worker may run the check already, so its state is not written over)."""
        if not states:
            return
        if generation != self._generation:
            self.on_unsaved([f"{d}:{c}" for d, c in states])
            return
        document = json_text([[d, c, state] for (d, c), state in states.items()])
        try:
            await self._rows_none(SAVE_HANDOFF_SQL, (document,), session=generation)
        except psycopg.Error as exc:
            log.warning("hand-off of %d checks not stored (their next run elsewhere starts cold): %s", len(states), exc)
            self.on_unsaved([f"{d}:{c}" for d, c in states])

    async def acquire_many(self, keys: list[str]) -> tuple[Hold, set[str]]:
        """Take the locks of a batch's checks at once, without waiting: (the taking, the keys taken).
        A key held here already (an earlier batch still runs it) or elsewhere is not taken."""
        want = [k for k in dict.fromkeys(keys) if k not in self.held]
        if not want:
            return Hold(self._generation), set()
        rows = await self._rows(LOCK_MANY_SQL, (want,))
        hold = Hold(self._generation)  # the session the query ran on (no await since)
        got = self._keep(hold, [str(r[0]) for r in rows])
        self.skipped += len(want) - len(got)
        return hold, got

    async def release_many(self, keys: set[str], hold: Hold) -> None:
        """Free the locks of a batch taken by `hold` and not freed yet (those lost with an older session are not ours,
        nor are those another run of this worker took since the batch's own run of the check ended)."""
        mine = [k for k in keys if self.held.get(k) is hold]
        for key in mine:
            del self.held[key]
        if mine and hold.generation == self._generation:
            try:
                await self._rows(UNLOCK_MANY_SQL, (mine,), session=hold.generation)
            except psycopg.Error:
                pass  # the session is gone, and its locks with it

    def release_soon(self, key: str, hold: Hold, handoff: Handoff | None = None) -> None:
        """Free a check's lock as its poll ends: at once here (a next run on this worker may lock it again: session
        locks count, and each run frees its own count), in PostgreSQL with the others ending within RELEASE_DELAY,
        in one query, after their hand-offs are stored (one more)."""
        if self.held.get(key) is not hold:
            return
        del self.held[key]
        self._to_release.setdefault(hold.generation, []).append(key)
        if handoff is not None:
            self._to_save.setdefault(hold.generation, {})[(handoff[0], handoff[1])] = handoff[2]
        self._start_releaser()

    def _start_releaser(self) -> None:
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(self._release_pending())

    async def _release_pending(self) -> None:
        while self._to_release:  # keys added while a release query runs are freed by the next round
            await asyncio.sleep(RELEASE_DELAY)
            pending, self._to_release = self._to_release, {}
            saves, self._to_save = self._to_save, {}
            for generation, keys in pending.items():
                if generation != self._generation:
                    await self._save_handoffs(generation, saves.get(generation, {}))  # not stored: said so
                    continue  # taken on a session that is gone, and its locks with it
                await self._save_handoffs(generation, saves.get(generation, {}))
                try:  # one unlock per release: a key locked twice is listed twice
                    await self._rows(UNLOCK_MANY_SQL, (keys,), session=generation)
                except psycopg.Error:
                    pass

    async def close(self) -> None:
        """Close the lock connection (frees every lock; polls still running under them are cut)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        self._session_lost()
        if self._watcher is not None:
            self._watcher.cancel()
