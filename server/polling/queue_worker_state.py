"""A queue worker's memory: the inventory it polls, its figures, and the run log / hand-off it writes with outcomes."""

from __future__ import annotations

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
from server.store.status import CheckOutcome, StatusMap, Transition
from server.store.workers import inventory_fingerprint, record_runs, save_handoff

WINDOW = 60.0  # seconds of history behind checks per minute and lag
# (slot, due) of the queue job the running task is for; read where its outcome is handed to the writer.
CURRENT_SLOT: ContextVar[tuple[int | None, float | None]] = ContextVar("pocketnoc_slot", default=(None, None))


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

    def snapshot(self, in_flight: int) -> dict[str, Any]:
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
    """A writer hook: stores each run (which worker, which slot, lag) and each check's hand-off state with the outcome."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._lock = threading.Lock()
        self._expected: dict[tuple[int, str, float], tuple[int | None, float | None]] = {}
        self._handoff: dict[tuple[int, str], dict[str, object]] = {}
        self._written: dict[tuple[int, str], dict[str, object]] = {}

    def sink(self, submit: Callable[[CheckOutcome], None]) -> Callable[[CheckOutcome], None]:
        """Wrap the writer's submit: tag each outcome with the slot of the task that produced it."""

        def tagged(outcome: CheckOutcome) -> None:
            slot, due = CURRENT_SLOT.get()
            with self._lock:
                self._expected[(outcome.device_id, outcome.check, outcome.ts)] = (slot, due)
            submit(outcome)

        return tagged

    def hand_off(self, device_id: int, check: str, state: dict[str, object]) -> None:
        """Queue a check's state for storing with the next batch."""
        with self._lock:
            self._handoff[(device_id, check)] = state

    def hook(
        self, conn: Connection, _transitions: list[Transition], outcomes: list[CheckOutcome], status: StatusMap
    ) -> None:
        """Runs in the writer's transaction (after the outcomes are applied); `committed` forgets what it wrote."""
        rows = []
        with self._lock:
            for o in outcomes:
                if o.device_id not in status:  # deleted meanwhile
                    continue
                slot, due = self._expected.get((o.device_id, o.check, o.ts), (None, None))
                rows.append(
                    {
                        "worker": self.worker,
                        "device_id": o.device_id,
                        "check_name": o.check,
                        "slot": slot,
                        "due": due,
                        "started": o.ts,
                        "lag": None if due is None else max(0.0, o.ts - due),
                        "ms": round(o.duration_ms, 1),
                        "ok": o.ok,
                    }
                )
            self._written = dict(self._handoff)
        record_runs(conn, rows)
        now = time.time()
        save_handoff(conn, [{"device_id": d, "check_name": c, "state": s, "ts": now} for (d, c), s in self._written.items()])

    def committed(self, _transitions: list[Transition], outcomes: list[CheckOutcome]) -> None:
        """A writer listener: the batch is in the database, so its slots and hand-offs are done (a retried batch keeps them)."""
        with self._lock:
            for o in outcomes:
                self._expected.pop((o.device_id, o.check, o.ts), None)
            for key, state in self._written.items():
                if self._handoff.get(key) is state:
                    del self._handoff[key]
            self._written = {}
