"""The dispatcher interface and its in-process implementation: a due-time heap and a fixed pool of workers."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from server.polling.jobs import CheckJob, PollNow
from server.polling.poller import Poller
from server.polling.schedule import DueQueue, Turn

log = logging.getLogger("pocketnoc.dispatch")
OVERLAP_LOG_EVERY = 3600.0  # seconds between log lines about one check overrunning its interval
# The scheduling task wakes at least this often (a check added by `sync` waits at most this long past its due time)
# and at most once per TICK_MIN: turns due within it are handed out together, a few ms early or late.
TICK_MAX = 0.25
TICK_MIN = 0.02


class Dispatcher(Protocol):
    """Runs every CheckJob once per interval; the scaled-out version uses a queue instead."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def sync(self, jobs: list[CheckJob]) -> None: ...

    async def run_now(self, device_id: int) -> PollNow: ...


class InProcessDispatcher:
    """Each check due on its own fixed phase of its interval (`schedule.phase`); `poll_concurrency` worker tasks
    take the due turns in order, so the work in flight and the memory held are bounded however far behind the
    process falls: at most one queued turn per check (a check whose last turn has not started or finished when the
    next comes skips that turn and counts it), never a task per turn.
    """

    def __init__(self, poller: Poller, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, workers: int | None = None) -> None:
        self.poller = poller
        self.due = DueQueue()
        self.clock = clock
        self._sleep = sleep
        self.workers = workers or poller.settings.poll_concurrency
        self._ready: asyncio.Queue[Turn] = asyncio.Queue()
        self._queued: set[str] = set()  # checks with a turn waiting in _ready
        self._tasks: list[asyncio.Task[None]] = []
        self._overlap_logged: dict[str, float] = {}
        # `sync` also comes from API handlers on the server's thread pool; the heap is shared with the loop's tick.
        self._lock = threading.Lock()

    @property
    def jobs(self) -> dict[str, CheckJob]:
        """The scheduled checks by key."""
        return self.due.jobs

    @property
    def queued(self) -> int:
        """Turns due and waiting for a worker."""
        return self._ready.qsize()

    def start(self, ticking: bool = True) -> None:
        """Start the workers and (unless a test drives `tick` itself) the scheduling task on the running loop."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work(), name=f"pocketnoc-poll-{n}") for n in range(self.workers)]
        if ticking:
            self._tasks.append(loop.create_task(self._run(), name="pocketnoc-schedule"))

    async def stop(self) -> None:
        """Stop scheduling and cancel the checks in flight (quietly: shutdown is not an error)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def sync(self, jobs: list[CheckJob]) -> None:
        """Make the scheduled set equal `jobs`: new checks are due at their next phase, kept ones keep their turn."""
        with self._lock:
            self.due.sync(jobs, self.clock())

    def tick(self, now: float) -> int:
        """Hand every turn due by `now` to the workers; returns how many were queued."""
        queued = 0
        with self._lock:
            turns = self.due.pop_due(now)
        for turn in turns:
            key = turn.job.key
            if key in self._queued or self.poller.running(key):
                self.poller.stats.skipped_overlap += 1
                self._note_overlap(turn.job)
                continue
            self._queued.add(key)
            self._ready.put_nowait(turn)
            queued += 1
        return queued

    async def _run(self) -> None:
        while True:
            self.tick(self.clock())
            with self._lock:
                upcoming = self.due.next_at()
            wait = TICK_MAX if upcoming is None else upcoming - self.clock()
            await self._sleep(min(TICK_MAX, max(TICK_MIN, wait)))

    async def _work(self) -> None:
        while True:
            turn = await self._ready.get()
            self._queued.discard(turn.job.key)
            if self.jobs.get(turn.job.key) is None:
                continue  # removed while it waited
            try:
                await self.poller.run_check(turn.job, due=turn.due)
            except Exception:  # the poller turns every failure into an outcome; a worker must outlive a bug anyway
                log.exception("check %s of %s crashed the poller", turn.job.check, turn.job.device)

    def _note_overlap(self, job: CheckJob) -> None:
        """Log a check that overran its interval at most once an hour (the count is on /metrics every time)."""
        now = time.monotonic()
        if now - self._overlap_logged.get(job.key, -OVERLAP_LOG_EVERY) >= OVERLAP_LOG_EVERY:
            self._overlap_logged[job.key] = now
            log.warning("%s: check %s was still running at its next turn (every %d s) and that turn was skipped; "
                        "counted in pocketnoc_poller_checks_total{result=\"skipped_overlap\"}, logged at most hourly",
                        job.device, job.check, job.interval)

    def due_offsets(self) -> list[float]:
        """Each check's phase within its interval (the benchmark's due-per-second histogram)."""
        with self._lock:
            return self.due.offsets()

    async def run_now(self, device_id: int) -> PollNow:
        """Poll every check of one device immediately (from the UI's 'poll now'). A check that is running at that
        moment (its scheduled turn, or another 'poll now') is waited for, up to its interval, and then polled again:
        'poll now' is a poll started after the request, as on queue workers. Several asking at once each wait their
        turn; one still waiting after the interval is not polled (counted out of `ran`)."""
        ran = 0
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.device_id == device_id]
        for job in jobs:
            deadline = time.monotonic() + job.interval + 5
            while True:  # None: it runs (another request's poll took it as it ended): wait for that one in turn
                await self.poller.wait_idle(job.key, max(0.0, deadline - time.monotonic()))
                if await self.poller.run_check(job, force=True) is not None:
                    ran += 1
                    break
                if time.monotonic() >= deadline:
                    break
        return PollNow(len(jobs), ran)
