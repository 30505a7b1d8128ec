"""A small all-threads sampling profiler (sys._current_frames at ~100 Hz) for runs cProfile would distort."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from types import FrameType
from typing import Any

from bench.profiling import _layer

# Frames whose presence in a stack names the activity, innermost first wins.
ACTIVITIES: tuple[tuple[str, str], ...] = (
    ("write_samples", "samples: series ids + INSERT"),
    ("apply_outcomes", "device status: JSON columns + UPDATE"),
    ("_commit", "commit"),
    ("build_reading", "collector: build Reading"),
    ("_recv_callback", "SNMP: receive + decode"),
    ("send_encoded", "SNMP: encode + send"),
    ("sendto", "SNMP: encode + send"),
    ("convert", "poller: counter rates"),
    ("collect", "collector: other"),
    ("run_check", "poller: other"),
    ("_process_jobs", "APScheduler"),
    ("run_coroutine_job", "APScheduler"),
    ("_take_batch", "idle: waiting for outcomes"),
    ("select", "idle: waiting in select"),
)


class Sampler:
    """Samples every thread's stack; reports where each thread spent its samples."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples = 0
        self.activity: Counter[str] = Counter()
        self.leaf_layers: Counter[str] = Counter()
        self.threads: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        me = threading.get_ident()
        names = {}
        while not self._stop.wait(self.interval):
            names.update({t.ident: t.name for t in threading.enumerate()})
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                thread = names.get(ident, "other")
                thread = "event loop" if thread == "MainThread" else thread
                thread = "writer" if "writer" in thread else thread
                if thread not in ("event loop", "writer"):
                    continue  # idle pool threads (asyncio.to_thread, APScheduler) would only add noise
                self.threads[thread] += 1
                self.activity[f"{thread}: {_activity(frame)}"] += 1
                self.leaf_layers[f"{thread}: {_layer(frame.f_code.co_filename, frame.f_code.co_name)}"] += 1
            self.samples += 1

    def report(self, top: int = 14) -> dict[str, Any]:
        """Shares of samples per thread and activity (a thread idle in a wait still counts as a sample)."""
        n = max(1, self.samples)
        return {
            "samples": self.samples,
            "threads": {k: v / n for k, v in self.threads.most_common()},
            "activity": {k: v / n for k, v in self.activity.most_common(top)},
            "leaf_layers": {k: v / n for k, v in self.leaf_layers.most_common(top)},
        }


def _activity(frame: FrameType | None) -> str:
    names: list[str] = []
    while frame is not None and len(names) < 80:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    for needle, label in ACTIVITIES:
        if needle in names:
            return label
    return "other"


