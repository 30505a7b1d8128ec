"""Per-check session locks against the real PostgreSQL: a stale release never frees a lock a later run took."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import psycopg
import pytest

from agents.base import Target
from server.polling import dispatch_batches
from server.polling.dispatch_queue import make_app
from server.polling.jobs import CheckJob, PollNow
from server.polling.queue_worker_state import HANDOFF_EVERY, HandoffPlan
from server.store import workers as workers_store
from server.store.checklocks import PING_EVERY, RELEASE_DELAY, CheckLocks, LockLost
from server.store.db import Engine, make_engine
from tests import sql
from tests.peers.tcpproxy import TcpProxy


async def held_poll(locks: CheckLocks, key: str = "7:snmp") -> asyncio.Task[None]:
    """Take `key` and start a long poll guarded by its lock (running once this returns)."""
    hold = await locks.acquire(key)
    assert hold is not None

    async def poll() -> None:
        async with locks.guard(hold):
            await asyncio.sleep(30.0)

    task = asyncio.create_task(poll())
    await asyncio.sleep(0.1)
    return task


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


async def test_the_next_holder_of_a_check_finds_the_counters_its_last_run_left(pg_url: str) -> None:
    """The hand-off is stored before the lock is freed, not at the batch's later commit: a worker that takes the check
    the moment it is free starts warm (its first poll has rates), whichever worker ran it last."""
    with psycopg.connect(pg_url, autocommit=True) as admin:
        device_id = admin.execute(
            "INSERT INTO devices (name, address, tags, interval, enabled, spec, source, created_at, updated_at) "
            "VALUES ('sw1', '127.0.0.1', '[]', 60, true, '{}', 'api', 0, 0) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    mine, other = CheckLocks(pg_url), CheckLocks(pg_url)
    try:
        state = {"rates": {"if_in_octets|ifIndex=1": [123456789, 1.5]}, "streak": 0}
        for slot in range(3):  # several frees in a row, each taken at once by the other worker
            session, got = await mine.acquire_many([f"{device_id}:snmp", "999999:snmp"])
            assert got == {f"{device_id}:snmp", "999999:snmp"}
            state["slot"] = slot
            mine.release_soon(f"{device_id}:snmp", session, (device_id, "snmp", dict(state)))
            mine.release_soon("999999:snmp", session, (999999, "snmp", {"slot": slot}))  # a device deleted meanwhile
            taken = await other.acquire(f"{device_id}:snmp", wait=5.0)
            assert taken is not None
            with psycopg.connect(pg_url, autocommit=True) as reader:
                rows = reader.execute("SELECT device_id, state FROM check_handoff").fetchall()
            assert rows == [(device_id, state)]  # stored before the lock was free; the deleted device's skipped
            await other.release(f"{device_id}:snmp", taken)
            assert await other.acquire("999999:snmp", wait=5.0) is not None  # its lock freed all the same
            await other.release("999999:snmp")
    finally:
        await mine.close()
        await other.close()


async def test_a_batch_ending_after_a_poll_now_took_its_check_does_not_free_the_poll_nows_lock(pg_url: str) -> None:
    """Issue 18: a batch frees a check's lock as its poll ends, and a 'poll now' waiting on the same worker takes it at
    once, on the same session; when that batch ends (its other checks done) it must not free the lock a second time,
    or a slot on another worker runs the check while the 'poll now' still polls it."""
    mine, other = CheckLocks(pg_url), CheckLocks(pg_url)
    try:
        batch, got = await mine.acquire_many(["7:snmp", "8:snmp"])
        assert got == {"7:snmp", "8:snmp"}
        mine.release_soon("7:snmp", batch)  # the batch's poll of 7 ends; its poll of 8 goes on
        poll_now = await mine.acquire("7:snmp", wait=2.0)
        assert poll_now is not None
        await asyncio.sleep(RELEASE_DELAY * 4)  # the batch's free of 7 reaches PostgreSQL
        assert await other.acquire("7:snmp") is None  # the 'poll now' holds it
        await mine.release_many(got, batch)  # the batch ends: 8 is freed, 7 is not the batch's any more
        assert await other.acquire("7:snmp") is None, "the 'poll now' lost its lock to the batch's end"
        assert "7:snmp" in mine.held
        assert await other.acquire("8:snmp") is not None
        await mine.release("7:snmp", poll_now)
        assert await other.acquire("7:snmp") is not None
    finally:
        await mine.close()
        await other.close()


async def test_a_late_slot_taking_a_check_a_batch_just_ended_keeps_it_until_its_own_poll_ends(pg_url: str) -> None:
    """The same between two batches of one worker: the later batch's slot (run late) takes the check its earlier batch
    just freed; the earlier batch's end frees its other checks only."""
    mine, other = CheckLocks(pg_url), CheckLocks(pg_url)
    try:
        first, got = await mine.acquire_many(["7:snmp", "8:snmp"])
        mine.release_soon("7:snmp", first)
        second, again = await mine.acquire_many(["7:snmp"])  # before the free reaches PostgreSQL: counted twice
        assert again == {"7:snmp"}
        await mine.release_many(got, first)
        await asyncio.sleep(RELEASE_DELAY * 4)
        assert await other.acquire("7:snmp") is None, "the later slot lost its lock to the earlier batch's end"
        mine.release_soon("7:snmp", second)
        assert await other.acquire("7:snmp", wait=2.0) is not None
    finally:
        await mine.close()
        await other.close()


async def test_a_poll_whose_lock_session_is_lost_is_cut_before_it_can_overlap_a_run_elsewhere(pg_url: str) -> None:
    """PostgreSQL ends the lock session (a fenced worker, a network cut): its locks are free for the other workers at
    once, so the polls still running under them are cut (LockLost) within PING_EVERY, not left believing they hold."""
    mine, other = CheckLocks(pg_url), CheckLocks(pg_url)
    try:
        hold, got = await mine.acquire_many(["7:snmp", "8:snmp"])
        assert got == {"7:snmp", "8:snmp"}

        async def poll(seconds: float) -> str:
            async with mine.guard(hold):
                await asyncio.sleep(seconds)
            return "done"

        slow = asyncio.create_task(poll(30.0))
        await asyncio.sleep(0.1)
        assert mine._conn is not None
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (mine._conn.info.backend_pid,))
        cut_by = time.monotonic() + PING_EVERY + 2.0
        with pytest.raises(LockLost):
            await asyncio.wait_for(slow, PING_EVERY + 2.0)
        assert time.monotonic() <= cut_by and not mine.held
        assert await other.acquire("7:snmp") is not None  # free elsewhere: the poll here is over
        with pytest.raises(LockLost):  # a poll of the lost session does not start either
            await poll(0.0)
        again = await mine.acquire("8:snmp")  # a new session: its polls run
        assert again is not None and again.generation != hold.generation
        async with mine.guard(again):
            await asyncio.sleep(PING_EVERY * 1.5)  # the watcher looks at a live session: nothing is cut
        mine.release_soon("8:snmp", again)
    finally:
        await mine.close()
        await other.close()


async def test_a_cancel_of_a_guarded_poll_from_outside_stays_a_cancel(pg_url: str) -> None:
    mine = CheckLocks(pg_url)
    try:
        task = await held_poll(mine)
        task.cancel()  # e.g. the worker stopping
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not mine.guarded
    finally:
        await mine.close()


async def test_two_tasks_of_one_worker_taking_a_check_at_once_leave_it_to_one_and_free_the_other_count(
    pg_url: str,
) -> None:
    mine, other = CheckLocks(pg_url), CheckLocks(pg_url)
    try:
        (batch, got), single = await asyncio.gather(mine.acquire_many(["7:snmp"]), mine.acquire("7:snmp"))
        assert (got == {"7:snmp"}) != (single is not None)  # one of them holds it
        holder = batch if got else single
        assert holder is not None and mine.held["7:snmp"] is holder
        mine.release_soon("7:snmp", holder)
        assert await other.acquire("7:snmp", wait=2.0) is not None  # the count the loser took was freed as well
    finally:
        await mine.close()
        await other.close()


async def test_a_lock_session_silent_for_two_heartbeats_cuts_its_polls_before_the_server_frees_its_locks(
    pg_url: str,
) -> None:
    """A cut link: the server frees the session's locks when its keepalive gives up (about four heartbeats); the polls
    under them are cut after two, and the session, given up, is closed once the link is back (its locks go then)."""
    url = urlsplit(pg_url)
    proxy = TcpProxy((url.hostname or "127.0.0.1", url.port or 5432)).start()
    mine = CheckLocks(sql.url_via(pg_url, "127.0.0.1", proxy.port), keepalive=1.0)
    other = CheckLocks(pg_url)
    try:
        slow = await held_poll(mine)
        proxy.pause()
        started = time.monotonic()
        with pytest.raises(LockLost):
            await asyncio.wait_for(slow, PING_EVERY + mine.silent_after + 2.0)
        assert mine.silent_after <= time.monotonic() - started and not mine.held
        assert await other.acquire("7:snmp") is None  # the server has not let it go yet: nothing ran twice at once
        proxy.resume()
        assert await other.acquire("7:snmp", wait=5.0) is not None  # closed once it answered: free elsewhere
        assert await mine.acquire("8:snmp") is not None  # a new session here
    finally:
        proxy.resume()
        await mine.close()
        await other.close()
        proxy.stop()


def test_a_checks_memory_is_stored_on_its_first_run_when_more_than_counters_change_and_every_few_slots() -> None:
    plan = HandoffPlan()
    quiet = (0, None, ())
    assert plan.due("7:snmp", 100, quiet)  # its first run here: the next worker must find something
    assert [plan.due("7:snmp", s, quiet) for s in range(101, 101 + HANDOFF_EVERY)] == [False] * (HANDOFF_EVERY - 1) + [True]
    failing = (1, None, ("timeout",))
    assert plan.due("7:snmp", 106, failing)  # a failure streak decides alerts and back-off at once: stored at once
    assert not plan.due("7:snmp", 107, failing)
    assert plan.due("7:snmp", 108, (2, 1234.0, ("timeout",)))
    assert plan.due("7:snmp", 109, quiet)  # recovered: stored at once too
    plan.forget("7:snmp")  # its memory came from another worker (or a lock was lost): the next run's is stored
    assert plan.due("7:snmp", 110, quiet)
    assert plan.due("7:snmp", 90, quiet)  # an older slot than the one stored (a clock step): stored, not trusted
    assert plan.due("8:snmp", 110, quiet) and not plan.due("8:snmp", 111, quiet)  # each check its own


async def test_a_hand_off_that_was_not_stored_is_said_so_and_the_next_run_stores_its_own(pg_url: str) -> None:
    """A worker stores a check's memory only every few slots (HandoffPlan): one whose store failed must not count as
    stored, or a device moving before the next store would start from memory older than that."""
    with psycopg.connect(pg_url, autocommit=True) as admin:
        device_id = admin.execute(
            "INSERT INTO devices (name, address, tags, interval, enabled, spec, source, created_at, updated_at) "
            "VALUES ('sw1', '127.0.0.1', '[]', 60, true, '{}', 'api', 0, 0) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
    key = f"{device_id}:snmp"
    locks = CheckLocks(pg_url)
    plan = HandoffPlan()
    lost: list[str] = []
    locks.on_unsaved = lambda keys: (lost.extend(keys), [plan.forget(k) for k in keys])
    try:
        session, got = await locks.acquire_many([key])
        assert got == {key} and plan.due(key, 1, (0, None, ()))
        assert locks._conn is not None
        with psycopg.connect(pg_url, autocommit=True) as admin:  # PostgreSQL cuts the lock session before the store
            admin.execute("SELECT pg_terminate_backend(%s)", (locks._conn.info.backend_pid,))
        locks.release_soon(key, session, (device_id, "snmp", {"slot": 1}))
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            await asyncio.sleep(RELEASE_DELAY)
        assert lost == [key]
        with psycopg.connect(pg_url, autocommit=True) as reader:
            assert reader.execute("SELECT count(*) FROM check_handoff").fetchone() == (0,)
        assert plan.due(key, 2, (0, None, ()))  # not counted as stored: the next slot stores its memory
    finally:
        await locks.close()


async def test_a_poll_now_no_worker_took_is_cancelled_and_said_so_not_left_to_fire_later(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 'poll now' for a site with no worker running: when the one who asked stops waiting (RUN_NOW_TIMEOUT) its job
    is cancelled and counted `untaken` (the API answers 503, the page asks whether the site's workers run), not
    reported as pending, nor left queued to fire whenever a worker comes."""
    monkeypatch.setattr(dispatch_batches, "RUN_NOW_TIMEOUT", 1.0)
    job = CheckJob(7, "sw1", "snmp", "snmp", 60, Target("127.0.0.1", 161, "sw1"))
    app = make_app(pg_url)
    engine = make_engine(pg_url)
    try:
        async with app.open_async():  # no worker takes the queue: the job stays waiting
            done = await dispatch_batches.run_now(app, [job], "site-nowhere", lambda ids: _states(engine, ids))
        assert done == PollNow(checks=1, ran=0, pending=0, untaken=1)
        left = sql.rows(engine, "SELECT status::text FROM procrastinate_jobs WHERE queue_name = 'site-nowhere'")
        assert [r[0] for r in left] == ["cancelled"]
    finally:
        engine.dispose()


def _states(engine: Engine, ids: list[int]) -> dict[int, str]:
    with engine.connect() as conn:
        return workers_store.job_states(conn, ids)
