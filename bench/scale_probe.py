"""Where a poll-start lag comes from: event-loop lag, writer batches, GC pauses and a per-second timeline."""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import quantile, status_mb
from server.polling.poller import Poller
from server.polling.writer import Writer

TICK = 0.05  # the loop-lag probe's sleep: how late it wakes up is how long the loop was busy (or starved)


class ScaleProbe:
    """Samples the running pipeline once a second and times what could hold the event loop up."""

    def __init__(self, poller: Poller, writer: Writer) -> None:
        self.poller = poller
        self.writer = writer
        self.loop_lags: list[float] = []
        self.batches: list[tuple[float, float, int]] = []  # (start, seconds, outcomes) of each writer commit
        self.gc_pauses: list[tuple[float, float, int]] = []  # (start, seconds, generation)
        self.timeline: list[dict[str, Any]] = []
        self._gc_start = 0.0
        self._t0 = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._sec_lag = 0.0
        self._wrapped: Callable[..., Any] | None = None

    def start(self) -> None:
        """Wrap the writer's commit, hook the GC, start the loop probe."""
        original = self.writer._commit
        self._wrapped = original

        def timed(batch: list[Any]) -> Any:
            t = time.monotonic()
            try:
                return original(batch)
            finally:
                self.batches.append((t - self._t0, time.monotonic() - t, len(batch)))

        self.writer._commit = timed  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Undo what start did."""
        if self._task is not None:
            self._task.cancel()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._wrapped is not None:
            self.writer._commit = self._wrapped  # type: ignore[method-assign]

    def mark(self) -> float:
        """Seconds since the probe began (the window's start, for the report)."""
        return time.monotonic() - self._t0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.monotonic()
        else:
            self.gc_pauses.append((self._gc_start - self._t0, time.monotonic() - self._gc_start, info["generation"]))

    async def _run(self) -> None:
        next_second = time.monotonic() + 1.0
        started0 = self.poller.stats.started
        while True:
            t = time.monotonic()
            await asyncio.sleep(TICK)
            late = time.monotonic() - t - TICK
            self.loop_lags.append(late)
            self._sec_lag = max(self._sec_lag, late)
            if time.monotonic() >= next_second:
                next_second += 1.0
                started = self.poller.stats.started
                self.timeline.append({
                    "t": round(self.mark(), 1), "started": started - started0, "in_flight": self.poller.stats.in_flight,
                    "backlog": self.writer.backlog, "tasks": len(asyncio.all_tasks()),
                    "loop_lag_max": round(self._sec_lag, 3), "rss_mb": round(status_mb("VmRSS"), 1),
                })
                started0, self._sec_lag = started, 0.0

    def report(self, since: float) -> dict[str, Any]:
        """Figures from `since` (probe seconds) on, plus the whole timeline (warm-up included)."""
        batches = [b for b in self.batches if b[0] >= since]
        pauses = [p for p in self.gc_pauses if p[0] >= since]
        secs = [b[1] for b in batches]
        return {
            "window_from_s": since,
            "loop_lag_p50_s": quantile(self.loop_lags, 0.5),
            "loop_lag_p99_s": quantile(self.loop_lags, 0.99),
            "loop_lag_max_s": max(self.loop_lags, default=0.0),
            "writer_batches": len(batches),
            "writer_batch_p50_s": quantile(secs, 0.5),
            "writer_batch_p99_s": quantile(secs, 0.99),
            "writer_batch_max_s": max(secs, default=0.0),
            "writer_batch_max_outcomes": max((b[2] for b in batches), default=0),
            "gc_pauses": len(pauses),
            "gc_pause_max_s": max((p[1] for p in pauses), default=0.0),
            "gc_pause_total_s": sum(p[1] for p in pauses),
            "gc_gen2_pauses": sum(1 for p in pauses if p[2] == 2),
            "timeline": self.timeline,
        }


def due_histogram(offsets: list[float]) -> dict[str, Any]:
    """How many checks fall due in each second of the interval: the burst the dispatcher's spread leaves."""
    per_second = Counter(int(o) for o in offsets)
    counts = list(per_second.values())
    return {
        "checks": len(offsets),
        "seconds_used": len(per_second),
        "max_per_second": max(counts, default=0),
        "mean_per_second": len(offsets) / max(1, len(per_second)),
    }
