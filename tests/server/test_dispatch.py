"""The in-process dispatcher on an injected clock: due times spread, work in flight bounded, back-pressure keeps
memory flat, every turn exactly once across re-schedules; the writer's batches bounded."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from agents.base import SnmpCredentials, Target
from server.config.settings import Settings
from server.polling.dispatch import InProcessDispatcher
from server.polling.jobs import CheckJob, PollNow
from server.polling.poller import Poller
from server.polling.schedule import DueQueue, phase
from server.polling.writer import MAX_BATCH, Writer
from server.store.db import Engine, make_engine, migrate
from server.store.status import CheckOutcome
from tests.peers.hostile_agent import hostile_agent

T0 = 1_800_000_000.0  # an injected wall clock: tests move it, nothing sleeps for it


def _tcp(device_id: int, port: int, interval: int = 60, host: str = "127.0.0.1") -> CheckJob:
    return CheckJob(device_id, f"d{device_id}", "tcp", "tcp", interval, Target(host, port, f"d{device_id}", timeout=1.0))


def _silent(device_id: int, port: int, interval: int = 60, timeout: float = 2.0) -> CheckJob:
    target = Target("127.0.0.1", port, f"d{device_id}", snmp=SnmpCredentials(community="public"), timeout=timeout,
                    retries=0)
    return CheckJob(device_id, f"d{device_id}", "snmp", "snmp", interval, target)


@asynccontextmanager
async def tcp_listener() -> AsyncIterator[int]:
    """A local TCP port that accepts and closes: a fast, real check."""

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(eng)
    yield eng
    eng.dispose()


async def _settle(until: object, limit: float = 0.9) -> None:
    """Let the event loop run (real checks on real sockets) until `until()` or `limit` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not until() and loop.time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


@pytest.mark.parametrize(("devices", "interval"), [(5000, 60), (10000, 60), (20000, 60), (300, 15), (90, 30)])
def test_due_times_are_spread_evenly_over_the_interval(devices: int, interval: int) -> None:
    jobs = [_tcp(i, 80, interval) for i in range(1, devices + 1)]
    per_second = Counter(int(phase(job)) for job in jobs)
    assert len(per_second) == interval  # every second of the interval has checks
    assert max(per_second.values()) <= math.ceil(devices / interval) + 2  # no burst: at most 2 over the mean
    assert [phase(job) for job in jobs] == [phase(job) for job in jobs]  # stable, so restarts keep the rhythm


def test_a_devices_checks_are_not_due_together() -> None:
    checks = [replace(_tcp(7, 80), check=name) for name in ("snmp", "tcp-22", "tcp-443", "ping")]
    assert len({round(phase(job), 3) for job in checks}) == len(checks)


def test_every_turn_is_handed_out_once_across_reschedules() -> None:
    jobs = [_tcp(i, 80, interval=10) for i in range(1, 201)]
    queue = DueQueue()
    queue.sync(jobs, T0)
    handed: Counter[tuple[str, float]] = Counter()
    for step in range(1, 501):  # 50 s in 0.1 s steps, re-syncing every 3.7 s with edited targets
        now = T0 + step * 0.1
        for turn in queue.pop_due(now):
            assert turn.due <= now < turn.due + 0.1 + 1e-6  # handed out on time
            handed[(turn.job.key, round(turn.due, 6))] += 1
        if step % 37 == 0:
            edited = [replace(job, target=replace(job.target, timeout=1.0 + step / 1000)) for job in jobs]
            queue.sync(edited, now)
    assert set(handed.values()) == {1}  # no turn twice
    per_check = Counter(key for key, _ in handed)
    assert set(per_check.values()) == {5}  # and none skipped: 50 s of a 10 s interval
    for job in jobs:
        dues = sorted(due for key, due in handed if key == job.key)
        assert all(math.isclose(b - a, 10.0) for a, b in itertools.pairwise(dues))
    assert queue.missed == 0


def test_a_stalled_clock_gives_one_late_turn_and_counts_the_missed_ones() -> None:
    jobs = [_tcp(i, 80, interval=10) for i in range(1, 51)]
    queue = DueQueue()
    queue.sync(jobs, T0)
    assert len(queue.pop_due(T0 + 10)) == 50
    late = queue.pop_due(T0 + 10 + 45)  # the process was stopped for 45 s
    assert len(late) == 50  # one turn each, not four or five
    assert queue.missed == sum(math.floor((T0 + 55 - turn.due) / 10) for turn in late)  # the rest are counted
    assert 50 * 3 <= queue.missed <= 50 * 4
    assert all(T0 + 55 < (queue._next[job.key]) <= T0 + 65 for job in jobs)


def test_a_removed_check_is_not_handed_out_and_an_interval_change_retimes_it() -> None:
    queue = DueQueue()
    a, b = _tcp(1, 80, interval=10), _tcp(2, 80, interval=10)
    queue.sync([a, b], T0)
    queue.sync([replace(a, interval=30)], T0 + 1)
    turns = [t for step in range(1, 601) for t in queue.pop_due(T0 + 1 + step * 0.1)]
    assert {t.job.key for t in turns} == {a.key}
    assert len(turns) == 2 and all(t.job.interval == 30 for t in turns)
    assert math.isclose(turns[1].due - turns[0].due, 30.0)


async def test_work_in_flight_is_bounded_and_a_late_check_is_not_queued_twice() -> None:
    now = [T0]
    async with hostile_agent("silent") as agent:
        jobs = [_silent(i, agent.port, interval=5) for i in range(1, 41)]
        poller = Poller(Settings(data_dir=Path("/nonexistent")), lambda _o: None)
        dispatcher = InProcessDispatcher(poller, clock=lambda: now[0], workers=6)
        dispatcher.start(ticking=False)
        try:
            dispatcher.sync(jobs)
            now[0] = T0 + 5
            assert dispatcher.tick(now[0]) == 40  # every check due once in the first 5 s
            await _settle(lambda: poller.stats.in_flight == 6, 0.5)
            assert poller.stats.in_flight == 6 and dispatcher.queued == 34
            tasks_before = len(asyncio.all_tasks())
            for k in range(1, 4):  # three more intervals pass while all of them are still waiting or running
                now[0] = T0 + 5 + 5 * k
                assert dispatcher.tick(now[0]) == 0
                await asyncio.sleep(0.02)
                assert poller.stats.in_flight == 6 and dispatcher.queued == 34
            assert poller.stats.skipped_overlap == 3 * 40  # counted, not queued
            assert len(asyncio.all_tasks()) <= tasks_before + 2  # 120 more turns came, no task for any of them
        finally:
            await dispatcher.stop()
            await poller.close()


async def test_a_slow_writer_holds_checks_back_without_growing_memory(engine: Engine) -> None:
    settings = Settings(data_dir=Path("/nonexistent"), writer_batch_seconds=0.05)
    writer = Writer(engine, settings)
    writer.max_backlog = 10
    writer.start()
    poller = Poller(settings, writer.submit, writer.has_room)
    now = [T0]
    dispatcher = InProcessDispatcher(poller, clock=lambda: now[0], workers=20)
    blocker = engine.connect()
    try:
        async with tcp_listener() as port:
            jobs = [_tcp(i, port, interval=10) for i in range(1, 301)]
            dispatcher.sync(jobs)
            dispatcher.start(ticking=False)
            blocker.begin()  # BEGIN IMMEDIATE: another writer holds SQLite's lock, ours stalls
            peaks = []
            for k in range(1, 6):  # five intervals pass while the writer cannot commit
                now[0] = T0 + 10 * k
                dispatcher.tick(now[0])
                await _settle(lambda: writer.backlog >= writer.max_backlog and poller.stats.in_flight == 0)
                peaks.append((writer.backlog, dispatcher.queued, len(asyncio.all_tasks())))
            assert all(backlog <= 10 + 20 for backlog, _, _ in peaks), peaks  # bounded by the writer's room
            assert all(queued <= 300 for _, queued, _ in peaks), peaks  # at most one waiting turn per check
            assert len({n for _, _, n in peaks}) == 1, peaks  # and no task per turn
            assert peaks[-1][:2] == peaks[1][:2]  # flat: nothing grows while it lasts
            assert poller.stats.skipped_overlap >= 3 * 280  # later turns of waiting checks are skipped and counted
            blocker.rollback()
            # SQLite's busy handler retries the writer's BEGIN about once a second by then
            assert await asyncio.to_thread(writer.flush, 20)
            await _settle(lambda: dispatcher.queued == 0 and writer.backlog == 0, 10)
            assert writer.backlog == 0 and dispatcher.queued == 0  # once it commits again, everything waiting ran
    finally:
        blocker.close()
        await dispatcher.stop()
        await poller.close()
        writer.stop()


async def test_each_check_runs_once_per_interval_across_a_reschedule() -> None:
    got: list[CheckOutcome] = []
    poller = Poller(Settings(data_dir=Path("/nonexistent")), got.append)
    now = [T0]
    dispatcher = InProcessDispatcher(poller, clock=lambda: now[0], workers=10)
    dispatcher.start(ticking=False)
    try:
        async with tcp_listener() as port:
            jobs = [_tcp(i, port, interval=10) for i in range(1, 31)]
            dispatcher.sync(jobs)
            for step in range(1, 301):  # 30 s on the injected clock
                now[0] = T0 + step * 0.1
                if dispatcher.tick(now[0]):  # real checks take real time: let this turn finish first
                    await _settle(lambda: poller.stats.in_flight == 0 and dispatcher.queued == 0)
                if step == 150:  # a config reload re-syncs every check (edited, removed and put back)
                    dispatcher.sync([replace(job, device=job.device + "-renamed") for job in jobs])
                await asyncio.sleep(0)
            await _settle(lambda: poller.stats.in_flight == 0 and dispatcher.queued == 0)
        per_device = Counter(o.device_id for o in got)
        assert set(per_device.values()) == {3}, per_device
        assert all(o.ok for o in got)
        assert (await dispatcher.run_now(1)).ran == 1
    finally:
        await dispatcher.stop()
        await poller.close()


def test_writer_batches_are_bounded(engine: Engine) -> None:
    settings = Settings(data_dir=Path("/nonexistent"), writer_batch_seconds=0.3)
    writer = Writer(engine, settings)
    sizes: list[int] = []
    writer.listeners.append(lambda _t, outcomes: sizes.append(len(outcomes)))
    for n in range(3 * MAX_BATCH + 7):  # queued before the thread starts: one long backlog
        writer.submit(CheckOutcome(900_000 + n, "tcp", "tcp", T0, True, True, 1.0))
    writer.start()
    assert writer.flush(20)
    writer.stop()
    assert sum(sizes) == 3 * MAX_BATCH + 7
    assert max(sizes) <= MAX_BATCH and len(sizes) >= 4


async def test_poll_now_while_the_scheduled_turn_runs_waits_for_it_then_polls() -> None:
    """In-process 'poll now' of a check whose turn is in flight (a silent agent: the poll lasts its 0.5 s timeout)
    waits for that turn and then polls again — it answered 404 "already running" before, on the phone too."""
    got: list[CheckOutcome] = []
    poller = Poller(Settings(data_dir=Path("/nonexistent")), got.append)
    dispatcher = InProcessDispatcher(poller, clock=lambda: T0, workers=2)
    async with hostile_agent("silent") as agent:
        job = _silent(1, agent.port, interval=10, timeout=0.5)
        dispatcher.sync([job])
        turn = asyncio.create_task(poller.run_check(job))  # the scheduled turn
        await asyncio.sleep(0.1)
        assert poller.running(job.key)
        assert (await dispatcher.run_now(1)).ran == 1
        assert await turn is not None
        assert len(got) == 2, got
        first, now = got
        assert now.ts >= first.ts + first.duration_ms / 1000 - 0.01, (first, now)  # started once the turn had ended
        assert poller.stats.skipped_overlap == 0
    await poller.close()


async def test_several_poll_nows_at_once_each_get_a_poll_started_after_they_asked() -> None:
    """Four 'poll now' of one device at once (taps on two phones, the API): each waits for the poll before it and then
    polls; none is told 'not polled' while the others poll (a trial saw two of four refused)."""
    got: list[CheckOutcome] = []
    poller = Poller(Settings(data_dir=Path("/nonexistent")), got.append)
    dispatcher = InProcessDispatcher(poller, clock=lambda: T0, workers=2)
    async with hostile_agent("silent") as agent:
        dispatcher.sync([_silent(1, agent.port, interval=10, timeout=0.3)])
        asked = time.time()
        done = await asyncio.gather(*(dispatcher.run_now(1) for _ in range(4)))
        assert [d.ran for d in done] == [1, 1, 1, 1] and all(d.checks == 1 and not d.pending for d in done), done
        assert len(got) == 4 and all(o.ts >= asked for o in got)
        for a, b in itertools.pairwise(sorted(got, key=lambda o: o.ts)):  # one after another, never two at once
            assert b.ts >= a.ts + a.duration_ms / 1000 - 0.01, (a, b)
        assert (await dispatcher.run_now(99)).checks == 0  # no such device: nothing to poll
    await poller.close()


def test_a_poll_nows_outcome_is_one_word_for_the_page_and_the_api() -> None:
    assert PollNow(0, 0).outcome == "none"  # nothing scheduled: 404, "polling is off"
    assert PollNow(2, 1, pending=1).outcome == "pending"  # a worker still runs one: 202
    assert PollNow(1, 0, untaken=1).outcome == "untaken"  # no worker took it: 503
    assert PollNow(1, 0).outcome == "not-polled"  # still running, or could not run: 409
    assert PollNow(3, 2).outcome == "partly" and PollNow(3, 3).outcome == "polled"  # 200
