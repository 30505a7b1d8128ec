"""A queue worker's memory: the inventory it polls, its figures, and the run log / hand-off it writes with outcomes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from server.polling.jobs import CheckJob
from server.polling.pipeline import all_jobs
from server.runtime import Services
from server.store.db import Connection
from server.store.shards import claim_runs
from server.store.status import CheckOutcome, Transition
from server.store.workers import RunLogRow, WorkerStats, inventory_fingerprint

WINDOW = 60.0  # seconds of history behind checks per minute and lag
# (slot, due) of the queue job the running task is for; read where its outcome is handed to the writer.
CURRENT_SLOT: ContextVar[tuple[int | None, float | None]] = ContextVar("pocketnoc_slot", default=(None, None))
# The outcomes of the batch being run: they go to the writer together when the batch ends (one transaction).
CURRENT_BATCH: ContextVar[list[CheckOutcome] | None] = ContextVar("pocketnoc_batch", default=None)
log = logging.getLogger("pocketnoc.worker")


# A check's counters are stored for the next worker at most this many of its slots apart. A device stays on its
# worker while it lives, so what is stored is read only when it moves; the counters found then may be a few slots
# old, and its first rate there spans those slots (an average over them, as after a back-off in one process).
HANDOFF_EVERY = 5


class HandoffPlan:
    """When a check's memory is stored for another worker: on its first run here, whenever more than its counters
    changed (failure streak, back-off, error facts: they decide alerts and waits at once), else every HANDOFF_EVERY
    slots. Storing it on every poll wrote ~16 KB of counters a poll a device: a fifth of a worker's CPU and more
    of PostgreSQL's, for something read only when a device moves."""

    def __init__(self) -> None:
        self._saved: dict[str, tuple[int, object]] = {}  # check -> (slot stored, its memory besides counters then)

    def due(self, key: str, slot: int, memory: object) -> bool:
        """Whether to store this slot's memory (then counted as stored)."""
        last = self._saved.get(key)
        if last is not None and last[1] == memory and 0 <= slot - last[0] < HANDOFF_EVERY:
            return False
        self._saved[key] = (slot, memory)
        return True

    def forget(self, key: str) -> None:
        """Its memory came from elsewhere, or its last store may have been lost: store the next run's."""
        self._saved.pop(key, None)


class Inventory:
    """Every check of every enabled device, re-read when the database says something changed."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.jobs: dict[str, CheckJob] = {}
        self.fingerprint: tuple[Any, ...] | None = None
        self._last_miss = 0.0

    def refresh(self, force: bool = False) -> bool:
        """Re-read devices if they changed (blocking: call it in a thread); True if they did."""
        with self.svc.reader.connect() as conn:
            fingerprint = inventory_fingerprint(conn)
        if fingerprint == self.fingerprint and not force:
            return False
        self.jobs = {job.key: job for job in all_jobs(self.svc)}
        self.fingerprint = fingerprint
        return True

    def miss_allowed(self) -> bool:
        """An unknown check may be a device added a moment ago: re-read at most once a second for it."""
        if time.monotonic() - self._last_miss < 1.0:
            return False
        self._last_miss = time.monotonic()
        return True


class WorkerFigures:
    """Checks done, failed and their start lag over the last minute."""

    def __init__(self) -> None:
        self.total = 0
        self.recent: deque[tuple[float, bool, float | None]] = deque()

    def add(self, ok: bool, lag: float | None) -> None:
        """Count one finished check."""
        self.total += 1
        self.recent.append((time.monotonic(), ok, lag))

    def snapshot(self, in_flight: int) -> WorkerStats:
        """Columns of the worker's heartbeat row."""
        horizon = time.monotonic() - WINDOW
        while self.recent and self.recent[0][0] < horizon:
            self.recent.popleft()
        lags = sorted(lag for _, _, lag in self.recent if lag is not None)

        def q(p: float) -> float | None:
            return round(lags[min(len(lags) - 1, int(p * len(lags)))], 3) if lags else None

        return {
            "checks_total": self.total,
            "checks_per_min": float(len(self.recent)),
            "failed_per_min": float(sum(1 for _, ok, _ in self.recent if not ok)),
            "lag_p50": q(0.5),
            "lag_p95": q(0.95),
            "in_flight": in_flight,
        }


class RunLog:
    """Logs each run (which worker, which slot, lag) in the writer's transaction. (A check's hand-off state is stored by
    the worker holding its lock, before it frees it: server.store.checklocks.)"""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._expected: dict[tuple[int, str, float], tuple[int | None, float | None]] = {}
        self.refused = 0  # results of slots applied already (by this or another worker)

    def sink(self, submit: Callable[[CheckOutcome], None]) -> Callable[[CheckOutcome], None]:
        """Wrap the writer's submit: tag each outcome with the slot of the task that produced it."""

        def tagged(outcome: CheckOutcome) -> None:
            slot, due = CURRENT_SLOT.get()
            with self._lock:
                self._expected[(outcome.device_id, outcome.check, outcome.ts)] = (slot, due)
            batch = CURRENT_BATCH.get()
            if batch is None:
                submit(outcome)
            else:
                batch.append(outcome)

        return tagged

    def claim(self, conn: Connection, outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
        """In the writer's transaction, before anything is applied: log the runs; a (device, check, slot) that is in the
        log already (a retried batch, a slot queued twice) is refused, so its outcome is not applied a second time."""
        rows: list[RunLogRow] = []
        slots = []
        with self._lock:
            for o in outcomes:
                slot, due = self._expected.get((o.device_id, o.check, o.ts), (None, None))
                slots.append(slot)
                rows.append({"worker": self.worker, "device_id": o.device_id, "check_name": o.check, "slot": slot,
                             "due": due, "started": o.ts, "lag": None if due is None else max(0.0, o.ts - due),
                             "ms": round(o.duration_ms, 1), "ok": o.ok})  # fmt: skip
        won = claim_runs(conn, rows)
        applied = [o for o, slot in zip(outcomes, slots, strict=True) if slot is None or (o.device_id, o.check, slot) in won]
        if len(applied) < len(outcomes):
            self.refused += len(outcomes) - len(applied)
            log.info("%d results not applied: their slots were applied already", len(outcomes) - len(applied))
        return applied

    def committed(self, _transitions: list[Transition], outcomes: list[CheckOutcome]) -> None:
        """A writer listener: the batch is in the database, so its slots are done (a retried batch keeps them)."""
        with self._lock:
            for o in outcomes:
                self._expected.pop((o.device_id, o.check, o.ts), None)


class CommitWaiter:
    """A writer listener: lets a batch wait until all of its outcomes are committed (the writer is a thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[None], list[int]]] = {}

    def expect(self, outcomes: list[CheckOutcome]) -> asyncio.Future[None]:
        """A future done once every one of these outcomes is committed (call before submitting them)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        left = [len(outcomes)]
        with self._lock:
            for o in outcomes:
                self._waiting[id(o)] = (loop, future, left)
        if not outcomes:
            future.set_result(None)
        return future

    def committed(self, _transitions: list[Transition], outcomes: list[CheckOutcome]) -> None:
        """Called on the writer thread after each commit."""
        with self._lock:
            for o in outcomes:
                item = self._waiting.pop(id(o), None)
                if item is None:
                    continue
                loop, future, left = item
                left[0] -= 1
                if left[0] == 0:
                    loop.call_soon_threadsafe(_finish, future)


def _finish(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
