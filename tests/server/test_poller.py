"""The poller and the in-process dispatcher against real agents: no overlap, back-off, isolation, scheduling."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.base import SnmpCredentials, Target
from server.config.settings import Settings
from server.polling.dispatch import InProcessDispatcher
from server.polling.jobs import CheckJob
from server.polling.poller import Poller
from server.polling.schedule import phase_of
from server.store.status import CheckOutcome
from tests.peers.hostile_agent import hostile_agent
from tests.peers.snmpd import SnmpdPeer, start_snmpd


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    peer = start_snmpd(tmp_path)
    yield peer
    peer.stop()


def _job(device_id: int, port: int, interval: int = 60, timeout: float = 0.5, community: str = "public") -> CheckJob:
    target = Target("127.0.0.1", port, f"d{device_id}", snmp=SnmpCredentials(community=community), timeout=timeout, retries=0)
    return CheckJob(device_id, f"d{device_id}", "snmp", "snmp", interval, target)


def _poller(**kw: object) -> tuple[Poller, list[CheckOutcome]]:
    got: list[CheckOutcome] = []
    settings = Settings(data_dir=Path("/nonexistent"), **kw)  # type: ignore[arg-type]
    return Poller(settings, got.append), got


async def test_a_check_never_overlaps_itself() -> None:
    poller, got = _poller()
    async with hostile_agent("silent") as agent:
        job = _job(1, agent.port, timeout=1.0)
        first = asyncio.create_task(poller.run_check(job))
        await asyncio.sleep(0.1)
        assert await poller.run_check(job) is None  # still running: skipped, not queued
        assert poller.stats.skipped_overlap == 1
        outcome = await first
        assert outcome is not None and not outcome.ok and not outcome.answered
    await poller.close()
    assert len(got) == 1



async def test_a_full_writer_makes_checks_wait_and_none_is_dropped(snmpd: SnmpdPeer) -> None:
    got: list[CheckOutcome] = []
    started, until = time.time(), time.monotonic() + 0.5
    poller = Poller(Settings(data_dir=Path("/nonexistent")), got.append, room=lambda: time.monotonic() >= until)
    outcomes = await asyncio.gather(*(poller.run_check(_job(n, snmpd.port, timeout=2.0)) for n in range(1, 6)))
    assert all(o is not None and o.ok for o in outcomes) and len(got) == 5  # waited, then all ran
    assert poller.stats.waited_for_writer == 5
    assert min(o.ts for o in outcomes if o is not None) >= started + 0.45  # no check started while the writer was full
    await poller.close()

async def test_dead_devices_back_off_and_recover(snmpd: SnmpdPeer) -> None:
    poller, got = _poller(down_after_failures=1, backoff_max_seconds=600)
    async with hostile_agent("silent") as agent:
        job = _job(1, agent.port, interval=10, timeout=0.2)
        for _ in range(3):
            await poller.run_check(job)
        skipped = await poller.run_check(job)
        assert skipped is None and poller.stats.skipped_backoff >= 1
        assert len(got) == 2  # the third run was already inside the back-off window
        forced = await poller.run_check(job, force=True)  # 'poll now' ignores back-off
        assert forced is not None
    recovered = await poller.run_check(_job(1, snmpd.port), force=True)
    assert recovered is not None and recovered.ok
    assert await poller.run_check(_job(1, snmpd.port)) is not None  # back-off cleared by the success
    await poller.close()


async def test_a_dead_device_does_not_delay_the_others(snmpd: SnmpdPeer) -> None:
    poller, got = _poller(poll_concurrency=20)
    async with hostile_agent("silent") as agent:
        dead = [_job(100 + i, agent.port, timeout=3.0) for i in range(3)]
        live = [_job(i, snmpd.port, timeout=3.0) for i in range(10)]
        started = time.monotonic()
        finished: dict[int, float] = {}

        async def run(job: CheckJob) -> None:
            await poller.run_check(job)
            finished[job.device_id] = time.monotonic() - started

        await asyncio.gather(*(run(j) for j in dead + live))
    live_times = [finished[j.device_id] for j in live]
    assert max(live_times) < 2.5, live_times  # done long before the dead ones time out
    assert min(finished[j.device_id] for j in dead) >= 2.9
    assert sum(o.ok for o in got) == 10
    await poller.close()


async def test_wrong_credentials_answered_false_but_not_crashing(snmpd: SnmpdPeer) -> None:
    poller, _ = _poller()
    outcome = await poller.run_check(_job(1, snmpd.port, community="nope"))
    assert outcome is not None and not outcome.ok and outcome.error
    await poller.close()


def test_spread_offsets_are_stable_and_cover_the_interval() -> None:
    offsets = [phase_of(i, "snmp", 60) for i in range(2000)]
    assert offsets == [phase_of(i, "snmp", 60) for i in range(2000)]
    assert all(0 <= o < 60 for o in offsets)
    per_bucket = [sum(1 for o in offsets if b * 6 <= o < (b + 1) * 6) for b in range(10)]
    assert min(per_bucket) > 150  # roughly even: no thundering herd at the top of the minute


async def test_dispatcher_runs_each_check_on_its_interval_and_syncs_changes(snmpd: SnmpdPeer) -> None:
    poller, got = _poller()
    now = [1_800_000_000.0]  # injected clock: the test moves it
    dispatcher = InProcessDispatcher(poller, clock=lambda: now[0])
    dispatcher.start(ticking=False)

    async def advance(seconds: float) -> None:
        for _ in range(int(seconds * 10)):
            now[0] += 0.1
            if dispatcher.tick(now[0]):
                while poller.stats.in_flight or dispatcher.queued:
                    await asyncio.sleep(0.01)

    try:
        jobs = [_job(i, snmpd.port, interval=5) for i in range(1, 4)]
        dispatcher.sync(jobs)
        assert set(dispatcher.jobs) == {j.key for j in jobs}
        await advance(11)
        per_device = {i: sum(o.device_id == i for o in got) for i in range(1, 4)}
        assert all(2 <= n <= 3 for n in per_device.values()), per_device  # once per 5 s, no duplicates
        assert max(poller.stats.lags) < 1.0
        dispatcher.sync(jobs[:1])  # two devices removed
        before = len(got)
        await advance(6)
        assert {o.device_id for o in got[before:]} <= {1}
        assert (await dispatcher.run_now(1)).ran == 1
    finally:
        await dispatcher.stop()
        await poller.close()


async def test_stopping_with_a_check_in_flight_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl-C while a device is being polled: the check is cancelled quietly, not an ERROR with a traceback."""
    poller, _ = _poller()
    dispatcher = InProcessDispatcher(poller)
    dispatcher.start(ticking=False)
    async with hostile_agent("silent") as agent:
        job = _job(1, agent.port, timeout=5.0)
        dispatcher.sync([job])
        due = dispatcher.due.next_at()
        assert due is not None and dispatcher.tick(due) == 1
        deadline = time.monotonic() + 10
        while job.key not in poller._running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert job.key in poller._running, "the check never started"
        with caplog.at_level(logging.WARNING):
            await dispatcher.stop()
            await asyncio.sleep(0.1)
        await poller.close()
    assert job.key not in poller._running
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]


async def test_a_check_overrunning_its_interval_is_counted_and_logged_once_not_every_tick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A turn that finds the check still running is skipped and counted; one log line an hour."""
    poller, _ = _poller()
    dispatcher = InProcessDispatcher(poller)
    dispatcher.start(ticking=False)
    try:
        async with hostile_agent("silent") as agent:
            job = _job(1, agent.port, interval=1, timeout=4.0)  # snmp retries 0: the check takes ~4 s, turns every 1 s
            with caplog.at_level(logging.INFO):
                dispatcher.sync([job])
                due = dispatcher.due.next_at()
                assert due is not None and dispatcher.tick(due) == 1
                while job.key not in poller._running:
                    await asyncio.sleep(0.01)
                for k in range(1, 4):  # three more turns come while it still runs
                    assert dispatcher.tick(due + k) == 0
        assert poller.stats.skipped_overlap == 3, poller.stats
        overran = [r for r in caplog.records if "was still running at its next turn" in r.getMessage()]
        assert len(overran) == 1 and overran[0].levelno == logging.WARNING and "d1" in overran[0].getMessage()
    finally:
        await dispatcher.stop()
        await poller.close()
