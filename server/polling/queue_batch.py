"""A queue worker runs a batch: the checks of its shard due within a couple of seconds, each at its own due time.

One round trip takes the batch's check locks and one loads the hand-off state of the checks whose last
slot ran elsewhere; each check's lock is freed when its poll ends (the frees of checks ending together
go in one query); the outcomes go to the writer together when the last check ends, so the batch's
results are committed in one transaction, with their run-log rows, which refuse a slot applied before.
A check still running here or on another worker is skipped for this slot, and so is a slot older than
one interval (a later one is queued already).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server.polling.jobs import CheckJob
from server.polling.poller import Poller
from server.polling.queue_worker_state import (
    CURRENT_BATCH,
    CURRENT_SLOT,
    CommitWaiter,
    HandoffPlan,
    Inventory,
    RunLog,
    WorkerFigures,
)
from server.polling.writer import Writer
from server.store import shards as store
from server.store.checklocks import CheckLocks, Hold, LockLost
from server.store.status import CheckOutcome

log = logging.getLogger("pocketnoc.worker")
COMMIT_WAIT = 60.0  # at most this long a batch holds its locks waiting for its commit (e.g. PostgreSQL restarting)


@dataclass
class BatchStats:
    """A worker's batches (its heartbeat and log)."""

    batches: int = 0
    stale: int = 0  # checks whose slot was older than an interval on arrival
    skipped: int = 0  # checks running elsewhere (or still here) when their slot came


@dataclass
class BatchRunner:
    """What a worker needs to run batches; `poller` and `writer` are set once the pipeline is built."""

    inventory: Inventory
    locks: CheckLocks
    runlog: RunLog
    figures: WorkerFigures
    connector: Any  # the queue's psycopg connector (async pool): hand-off reads without a thread hop
    clock_offset: Callable[[], float]  # database clock minus ours
    last_slot: dict[str, int]
    poller: Poller | None = None
    writer: Writer | None = None
    waiter: CommitWaiter = field(default_factory=CommitWaiter)
    handoffs: HandoffPlan = field(default_factory=HandoffPlan)
    stats: BatchStats = field(default_factory=BatchStats)
    skip_logged: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.locks.on_unsaved = self._unsaved

    def _unsaved(self, keys: list[str]) -> None:
        """Hand-offs that were not stored: the next run of each stores its own, not in up to HANDOFF_EVERY slots."""
        for key in keys:
            self.handoffs.forget(key)

    async def _job(self, key: str) -> CheckJob | None:
        job = self.inventory.jobs.get(key)
        if job is None and self.inventory.miss_allowed():  # a device added a moment ago
            await asyncio.to_thread(self.inventory.refresh, True)
            job = self.inventory.jobs.get(key)
        return job

    async def run(self, checks: list[list[Any]]) -> None:
        """The queue task of a batch: [[device_id, check, slot, due (database clock)], ...]."""
        poller = self.poller
        if poller is None or self.writer is None:
            return
        self.stats.batches += 1
        offset = self.clock_offset()
        items: list[tuple[CheckJob, int, float]] = []
        for device_id, check, slot, due in checks:
            job = await self._job(f"{device_id}:{check}")
            if job is None:
                continue  # deleted or disabled since it was queued
            if time.time() + offset > float(due) + job.interval:
                self.stats.stale += 1
                continue
            items.append((job, int(slot), float(due) - offset))
        if not items:
            return
        await asyncio.sleep(max(0.0, min(d for _, _, d in items) - time.time()))
        session, locked = await self.locks.acquire_many([job.key for job, _, _ in items])
        run = [item for item in items if item[0].key in locked]
        later = [item for item in items if item[0].key not in locked]  # running now, here or elsewhere
        try:
            await self._import_states(poller, run)
            outcomes: list[CheckOutcome] = []
            token = CURRENT_BATCH.set(outcomes)  # the checks' tasks copy this context: their outcomes land here
            try:  # every check ends before the batch frees what is left of its locks: none is freed under a poll
                ends = await asyncio.gather(*(self._one(poller, job, slot, due, session) for job, slot, due in run),
                                            *(self._later(poller, job, slot, due) for job, slot, due in later),
                                            return_exceptions=True)  # fmt: skip
            finally:
                CURRENT_BATCH.reset(token)
            for end in ends:
                if isinstance(end, BaseException) and not isinstance(end, asyncio.CancelledError):
                    log.error("a check of a batch failed in the worker", exc_info=end)
            await self._commit(outcomes)
        finally:
            await self.locks.release_many(locked, session)  # those not freed yet (an error, a cancel)

    def _note_skip(self, job: CheckJob, slot: int) -> None:
        """Count it; say so once per check per ten minutes (a check slower than its interval skips every other slot)."""
        self.stats.skipped += 1
        now = time.monotonic()
        if now - self.skip_logged.get(job.key, -3600.0) >= 600:
            self.skip_logged[job.key] = now
            log.info("check %s of %s still runs (here or on another worker): slot %s skipped (more are not logged for "
                     "10 min)", job.check, job.device, slot)  # fmt: skip

    async def _import_states(self, poller: Poller, run: list[tuple[CheckJob, int, float]]) -> None:
        """Checks whose previous slot did not run here take over what the last worker left (one query)."""
        cold = [job for job, slot, _ in run if self.last_slot.get(job.key) != slot - 1]
        if not cold:
            return
        states = await store.load_handoffs_async(self.connector, [(job.device_id, job.check) for job in cold])
        for job in cold:
            self.handoffs.forget(job.key)  # this run's memory is stored, whatever was stored here before
            state = states.get((job.device_id, job.check))
            if state:
                poller.import_state(job, state)

    async def _later(self, poller: Poller, job: CheckJob, slot: int, due: float) -> None:
        """A check that was running when its batch came: decided at its own due time. Still running here: this slot is
        skipped, as in-process. Running on another worker (its device just moved, or a retried batch runs it): wait
        for that run to end, up to half an interval, and run this slot late rather than skip it."""
        await asyncio.sleep(max(0.0, due - time.time()))
        deadline, pause = due + job.interval / 2, 0.25
        while job.key not in self.locks.held:
            session, got = await self.locks.acquire_many([job.key])
            if job.key in got:  # its device moved here while its last run went on elsewhere: take that run's state
                await self._import_states(poller, [(job, slot, due)])
                await self._one(poller, job, slot, due, session)
                return
            if time.time() + pause >= deadline:
                break
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 2.0)
        self._note_skip(job, slot)

    async def _one(self, poller: Poller, job: CheckJob, slot: int, due: float, session: Hold) -> None:
        await asyncio.sleep(max(0.0, due - time.time()))
        CURRENT_SLOT.set((slot, due))
        self.last_slot[job.key] = slot
        handoff = None
        try:
            async with self.locks.guard(session):  # its lock session lost: the poll is cut (another worker may run it)
                outcome = await poller.run_check(job, due=due)
            if outcome is not None and self.handoffs.due(job.key, slot, poller.memory(job)):
                handoff = (job.device_id, job.check, poller.export_state(job))
        except LockLost as exc:
            log.warning("check %s of %s (slot %s) cut: %s", job.check, job.device, slot, exc)
            self.last_slot.pop(job.key, None)  # its memory here is not the last run's any more
            self.handoffs.forget(job.key)
            return
        finally:  # its poll is over: the next slot may run (here or elsewhere) before this batch's commit, and finds
            self.locks.release_soon(job.key, session, handoff)  # the counters stored before the lock is freed
        if outcome is None:
            return
        self.figures.add(outcome.ok, max(0.0, outcome.ts - due))

    async def _commit(self, outcomes: list[CheckOutcome]) -> None:
        writer = self.writer
        if writer is None or not outcomes:
            return
        done = self.waiter.expect(outcomes)
        for outcome in outcomes:
            writer.submit(outcome)
        try:
            await asyncio.wait_for(done, COMMIT_WAIT)
        except TimeoutError:
            log.warning("a batch's %d results are not committed after %.0fs; its checks are freed", len(outcomes),
                        COMMIT_WAIT)  # fmt: skip
