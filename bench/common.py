"""Small measuring helpers shared by the benchmarks: CPU/wall stopwatch, memory, quantiles."""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path


class Stopwatch:
    """Process CPU (all threads) and wall time since creation."""

    def __init__(self) -> None:
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()

    def stop(self) -> tuple[float, float]:
        """(cpu seconds, wall seconds) so far."""
        return time.process_time() - self.cpu0, time.perf_counter() - self.wall0


def status_mb(field: str = "VmHWM") -> float:
    """A memory figure of this process from /proc/self/status, in MB (VmHWM = peak RSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def children_cpu() -> float:
    """User+system CPU of reaped child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
