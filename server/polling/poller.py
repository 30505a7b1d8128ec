"""Runs one check: bounded concurrency, no overlap, back-off, timeouts; decides ok/failed, never crashes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from agents import builtin
from agents.base import REGISTRY, Borrower, CollectError, Collector, Reading, Unreachable
from server.config.settings import Settings
from server.polling import heap
from server.polling.jobs import CheckJob
from server.polling.rates import RateTracker
from server.store.status import DEVICE_FACT_KINDS, CheckOutcome

log = logging.getLogger("pocketnoc.poller")
ERROR_CAP = 500


@dataclass
class PollerStats:
    """The poller's own figures, exported on /metrics."""

    started: int = 0
    ok: int = 0
    failed: int = 0
    skipped_overlap: int = 0
    skipped_backoff: int = 0
    in_flight: int = 0
    waited_for_writer: int = 0  # checks that waited because the writer's backlog was full
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=5000))
    durations: deque[float] = field(default_factory=lambda: deque(maxlen=5000))

    def lag_quantile(self, q: float) -> float:
        """A quantile of recent poll start lags in seconds."""
        if not self.lags:
            return 0.0
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Poller:
    """Turns CheckJobs into CheckOutcomes handed to `sink` (the writer)."""

    def __init__(self, settings: Settings, sink: Callable[[CheckOutcome], None], room: Callable[[], bool] | None = None) -> None:
        builtin.load()
        self.settings = settings
        self.sink = sink
        self.room = room  # the sink's back-pressure: False while it cannot take more (checks wait, none is dropped)
        self._gate = asyncio.Lock()
        self.rates = RateTracker()
        self.stats = PollerStats()
        self._collectors: dict[str, Collector] = {}
        self._running: set[str] = set()
        self._idle: dict[str, asyncio.Event] = {}  # waiters for a running check to end (poll now)
        self._streak: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._error_facts: dict[str, tuple[str, ...]] = {}
        self._semaphore = asyncio.Semaphore(settings.poll_concurrency)
        heap.settle()  # the start-up heap leaves the collector's work (see heap.py for what it measured)
        self._settled = True

    def running(self, key: str) -> bool:
        """Whether the check with this key is running now (a turn that finds it so is skipped and counted)."""
        return key in self._running

    def collector(self, kind: str) -> Collector:
        """The shared collector instance for a check kind."""
        if kind not in self._collectors:
            factory = REGISTRY.get(kind)
            if factory is None:
                raise CollectError(f"no collector for check kind {kind!r}")
            made = factory()
            if isinstance(made, Borrower):  # nagios via ssh logs in through the SSH collector's pool: one login a host
                for other in made.borrows:
                    if other != kind:
                        made.lend(other, self.collector(other))
            self._collectors[kind] = made
        return self._collectors[kind]

    async def close(self) -> None:
        """Close every collector (pooled sockets, SSH connections)."""
        for collector in self._collectors.values():
            try:
                await collector.close()
            except Exception:
                log.exception("closing the %s collector failed", collector.kind)
        self._collectors.clear()
        if self._settled:
            self._settled = False
            heap.release()

    def forget(self, device_id: int) -> None:
        """Drop per-device state (rates, back-off) of a removed device."""
        self.rates.forget(device_id)
        prefix = f"{device_id}:"
        for table in (self._streak, self._not_before):
            for key in [k for k in table if k.startswith(prefix)]:
                del table[key]

    def export_state(self, job: CheckJob) -> dict[str, object]:
        """One check's memory (counters for rates, failure streak, back-off) as JSON, so another worker can go on."""
        return {
            "rates": self.rates.export(job.device_id, job.check),
            "streak": self._streak.get(job.key, 0),
            "not_before": self._not_before.get(job.key),
            "error_facts": list(self._error_facts.get(job.key, ())),
        }

    def memory(self, job: CheckJob) -> tuple[int, float | None, tuple[str, ...]]:
        """What of a check's memory is not its counters (failure streak, back-off, error facts): cheap to compare."""
        key = job.key
        return self._streak.get(key, 0), self._not_before.get(key), self._error_facts.get(key, ())

    def import_state(self, job: CheckJob, state: dict[str, object]) -> None:
        """Take over what `export_state` gave in another process (queue workers run each check anywhere)."""
        rates = state.get("rates")
        if isinstance(rates, dict):
            self.rates.restore(job.device_id, job.check, rates)
        streak, not_before, facts = state.get("streak"), state.get("not_before"), state.get("error_facts")
        if isinstance(streak, int) and streak > 0:
            self._streak[job.key] = streak
        else:
            self._streak.pop(job.key, None)
        if isinstance(not_before, int | float):
            self._not_before[job.key] = float(not_before)
        else:
            self._not_before.pop(job.key, None)
        if isinstance(facts, list) and facts:
            self._error_facts[job.key] = tuple(str(f) for f in facts)
        else:
            self._error_facts.pop(job.key, None)

    def _backoff(self, job: CheckJob, answered: bool) -> None:
        streak = self._streak.get(job.key, 0) + 1
        self._streak[job.key] = streak
        over = streak - self.settings.down_after_failures
        if answered or over <= 0 or self.settings.backoff_max_seconds <= job.interval:
            return
        wait = min(job.interval * (2**over), self.settings.backoff_max_seconds)
        self._not_before[job.key] = time.time() + wait - job.interval * 0.5

    async def wait_idle(self, key: str, within: float) -> None:
        """Wait (up to `within` s) until the check `key` (device_id:check) is not being polled."""
        if key not in self._running:
            return
        idle = self._idle.setdefault(key, asyncio.Event())
        try:
            await asyncio.wait_for(idle.wait(), within)
        except TimeoutError:
            pass

    async def run_check(self, job: CheckJob, due: float | None = None, force: bool = False) -> CheckOutcome | None:
        """Run one check now (if not already running or backing off) and hand the outcome to the sink."""
        if job.key in self._running:
            self.stats.skipped_overlap += 1
            return None
        if not force and time.time() < self._not_before.get(job.key, 0.0):
            self.stats.skipped_backoff += 1
            return None
        self._running.add(job.key)
        try:
            async with self._semaphore:
                if self.room is not None and not self.room():
                    await self._wait_for_room(self.room)
                start = time.time()
                if due is not None:
                    self.stats.lags.append(max(0.0, start - due))
                self.stats.started += 1
                self.stats.in_flight += 1
                try:
                    outcome = await self._collect(job, start)
                finally:
                    self.stats.in_flight -= 1
            self.stats.durations.append(outcome.duration_ms)
            self.sink(outcome)
            return outcome
        finally:
            self._running.discard(job.key)
            idle = self._idle.pop(job.key, None)
            if idle is not None:
                idle.set()

    async def _wait_for_room(self, room: Callable[[], bool]) -> None:
        """Wait until the sink has room again: one waiter polls, the others queue behind it in order."""
        self.stats.waited_for_writer += 1
        async with self._gate:
            while not room():  # noqa: ASYNC110 - the writer is a thread; a 20 ms look is cheaper than a cross-thread wake-up
                await asyncio.sleep(0.02)

    async def _collect(self, job: CheckJob, start: float) -> CheckOutcome:
        limit = job.time_limit
        error: str | None = None
        answered = False
        extra: dict[str, object] | None = None
        reading: Reading | None = None
        try:
            reading = await asyncio.wait_for(self.collector(job.kind).collect(job.target), timeout=limit)
        except Unreachable as exc:
            error = str(exc) or "no answer"
        except CollectError as exc:
            answered, error = True, str(exc) or exc.__class__.__name__
            extra = getattr(exc, "facts", None)  # e.g. the host key an SSH server offered
        except TimeoutError:
            error = f"no complete answer within {limit:.0f}s"
        except Exception as exc:  # a collector bug must not stop polling
            log.exception("check %s of %s crashed", job.check, job.device)
            error = f"internal error ({exc.__class__.__name__})"
        duration_ms = (time.time() - start) * 1000
        if reading is None:
            self.stats.failed += 1
            if self._streak.get(job.key, 0) == 0:
                log.warning("%s %s failed: %s", job.device, job.check, (error or "")[:200])
            self._backoff(job, answered)
            facts = dict(extra) if isinstance(extra, dict) else None
            if facts:
                self._error_facts[job.key] = tuple(facts)
            return CheckOutcome(
                job.device_id, job.check, job.kind, start, False, answered, duration_ms, (error or "failed")[:ERROR_CAP], facts
            )
        if self._streak.pop(job.key, 0):
            log.info("%s %s recovered", job.device, job.check)
        for stale in self._error_facts.pop(job.key, ()):
            reading.facts.setdefault(stale, None)  # clear what the last failure reported
        self._not_before.pop(job.key, None)
        self.stats.ok += 1
        if job.kind not in DEVICE_FACT_KINDS:  # several ping/TCP/HTTP checks per device: label series by check
            for sample in reading.samples:
                sample.labels = {**sample.labels, "check": job.check}
        uptime = reading.facts.get("uptime_seconds")
        samples = self.rates.convert(
            job.device_id, job.check, reading.samples, float(uptime) if isinstance(uptime, int | float) else None
        )
        problem = reading.problem
        return CheckOutcome(
            job.device_id,
            job.check,
            job.kind,
            start,
            ok=problem is None,
            answered=True,
            duration_ms=duration_ms,
            error=str(problem)[:ERROR_CAP] if problem else None,
            facts=reading.facts,
            tables=reading.tables,
            samples=samples,
        )
