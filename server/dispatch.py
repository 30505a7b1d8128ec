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

from server.jobs import CheckJob
from server.poller import Poller

log = logging.getLogger("pocketnoc.dispatch")


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
        with contextlib.suppress(asyncio.CancelledError):  # shutdown cancels checks in flight: not an error
            await self.poller.run_check(job, due=due)

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
                max_instances=1,
                misfire_grace_time=max(1, job.interval),
            )

    async def run_now(self, device_id: int) -> int:
        """Poll every check of one device immediately (from the UI's 'poll now'); returns how many ran."""
        ran = 0
        for job in [j for j in self.jobs.values() if j.device_id == device_id]:
            if await self.poller.run_check(job, force=True) is not None:
                ran += 1
        return ran
