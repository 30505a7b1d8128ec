"""The dispatcher interface and its in-process implementation on APScheduler 3.x."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from datetime import UTC, datetime
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from server.polling.jobs import CheckJob
from server.polling.poller import Poller

log = logging.getLogger("pocketnoc.dispatch")
OVERLAP_LOG_EVERY = 3600.0  # seconds between log lines about one check overrunning its interval


class Dispatcher(Protocol):
    """Runs every CheckJob once per interval; the scaled-out version uses a queue instead."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def sync(self, jobs: list[CheckJob]) -> None: ...

    async def run_now(self, device_id: int) -> int: ...


def spread_offset(key: str, interval: int) -> float:
    """A stable offset in [0, interval) so checks spread evenly instead of firing together."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


class InProcessDispatcher:
    """One APScheduler interval job per check; coalesced, never overlapping, late runs still run."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.jobs: dict[str, CheckJob] = {}
        self._starts: dict[str, float] = {}
        self._overlap_logged: dict[str, float] = {}

    def start(self) -> None:
        """Start the scheduler on the running event loop."""
        self.scheduler.start()

    async def stop(self) -> None:
        """Stop scheduling (running checks finish on their own timeouts)."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def _fire(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None:
            return
        start = self._starts[key]
        due = start + math.floor((time.time() - start) / job.interval) * job.interval
        if self.poller.running(key):  # still running from its last turn: the poller skips and counts it
            self._note_overlap(job)
        with contextlib.suppress(asyncio.CancelledError):  # shutdown cancels checks in flight: not an error
            await self.poller.run_check(job, due=due)

    def _note_overlap(self, job: CheckJob) -> None:
        """Log a check that overran its interval at most once an hour (the count is on /metrics every time)."""
        now = time.monotonic()
        if now - self._overlap_logged.get(job.key, -OVERLAP_LOG_EVERY) >= OVERLAP_LOG_EVERY:
            self._overlap_logged[job.key] = now
            log.warning("%s: check %s was still running at its next turn (every %d s) and that turn was skipped; "
                        "counted in pocketnoc_poller_checks_total{result=\"skipped_overlap\"}, logged at most hourly",
                        job.device, job.check, job.interval)

    def sync(self, jobs: list[CheckJob]) -> None:
        """Make the scheduled set equal `jobs`: add new, replace changed, remove gone ones."""
        wanted = {job.key: job for job in jobs}
        for key in list(self.jobs):
            if key not in wanted:
                self.scheduler.remove_job(key)
                del self.jobs[key]
                self._starts.pop(key, None)
        now = time.time()
        for key, job in wanted.items():
            old = self.jobs.get(key)
            if old == job:
                continue
            start = now + spread_offset(key, job.interval)
            self.jobs[key] = job
            self._starts[key] = start
            self.scheduler.add_job(
                self._fire,
                IntervalTrigger(seconds=job.interval, start_date=datetime.fromtimestamp(start, UTC), timezone=UTC),
                args=[key],
                id=key,
                replace_existing=True,
                coalesce=True,
                # 2, not 1: a turn that finds the check still running reaches the poller, which skips and counts
                # it (APScheduler itself would log a WARNING at every tick); the poller never overlaps a check.
                max_instances=2,
                misfire_grace_time=max(1, job.interval),
            )

    async def run_now(self, device_id: int) -> int:
        """Poll every check of one device immediately (from the UI's 'poll now'); returns how many ran."""
        ran = 0
        for job in [j for j in self.jobs.values() if j.device_id == device_id]:
            if await self.poller.run_check(job, force=True) is not None:
                ran += 1
        return ran
