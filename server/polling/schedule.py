"""When each check is due: a fixed phase per check on a wall-clock grid, and a heap of the next due times.

Pure bookkeeping (no asyncio, no clock of its own): the in-process dispatcher asks it what is due at `now`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from dataclasses import dataclass

from server.polling.jobs import CheckJob

# The golden ratio's fractional part: device ids 1, 2, 3, ... times it, modulo 1, fall as evenly over [0, 1) as
# any sequence can (each new point lands in the largest gap), so consecutive ids never bunch into one second.
GOLDEN = 0.6180339887498949


def phase(job: CheckJob) -> float:
    """This check's offset in [0, interval): due at phase, phase + interval, ... (seconds since the epoch)."""
    return phase_of(job.device_id, job.check, job.interval)


def phase_of(device_id: int, check: str, interval: int) -> float:
    """The phase of a device's check, one rule for the in-process heap and the queue's slots.

    Deterministic (the same after a restart or a re-schedule) and evenly spread over the device ids of one check
    name; each check name is shifted by a hash so a device's SNMP and TCP checks do not fire together.
    """
    shift = int.from_bytes(hashlib.sha256(check.encode()).digest()[:8], "big") / 2**64
    return ((device_id * GOLDEN + shift) % 1.0) * interval


def next_due(job: CheckJob, after: float) -> float:
    """The first due time of `job` at or after `after`."""
    p = phase(job)
    return p + math.ceil((after - p) / job.interval) * job.interval


@dataclass
class Turn:
    """One due turn of one check."""

    job: CheckJob
    due: float


class DueQueue:
    """The checks and when each is next due; `pop_due(now)` hands out every turn due by now, once.

    A turn is never handed out twice, and re-syncing an unchanged or edited check (same interval) keeps its next
    turn, so a re-schedule neither skips nor repeats a poll. A check more than an interval behind (the process
    was stopped or starved) jumps to its next turn from now; the turns it passed are counted in `missed`.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, CheckJob] = {}
        self._next: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self.missed = 0

    def sync(self, jobs: list[CheckJob], now: float) -> None:
        """Make the set of checks equal `jobs`; new ones (or a changed interval) are due at their next grid point."""
        wanted = {job.key: job for job in jobs}
        for key in [k for k in self.jobs if k not in wanted]:
            del self.jobs[key]
            del self._next[key]  # its heap entry goes stale and is dropped when it comes up
        for key, job in wanted.items():
            old = self.jobs.get(key)
            self.jobs[key] = job
            if old is not None and old.interval == job.interval:
                continue
            due = next_due(job, now)
            self._next[key] = due
            heapq.heappush(self._heap, (due, key))
        if len(self._heap) > 2 * len(self._next) + 64:  # many stale entries after removals: rebuild
            self._heap = [(due, key) for key, due in self._next.items()]
            heapq.heapify(self._heap)

    def next_at(self) -> float | None:
        """When the earliest turn is due (None with no checks)."""
        while self._heap:
            due, key = self._heap[0]
            if self._next.get(key) == due:
                return due
            heapq.heappop(self._heap)  # stale: removed or re-timed
        return None

    def pop_due(self, now: float, limit: int | None = None) -> list[Turn]:
        """Every turn due at or before `now` (at most `limit`), earliest first; each check's next turn is queued."""
        turns: list[Turn] = []
        while self._heap and (limit is None or len(turns) < limit):
            due, key = self._heap[0]
            if due > now:
                break
            heapq.heappop(self._heap)
            if self._next.get(key) != due:
                continue
            job = self.jobs[key]
            turns.append(Turn(job, due))
            following = due + job.interval
            if following <= now:  # coalesce: one late turn now, not one per interval passed
                passed = math.floor((now - following) / job.interval) + 1
                self.missed += passed
                following += passed * job.interval
            self._next[key] = following
            heapq.heappush(self._heap, (following, key))
        return turns

    def offsets(self) -> list[float]:
        """Each check's phase within its interval (for measuring how evenly they are spread)."""
        return [phase(job) for job in self.jobs.values()]
