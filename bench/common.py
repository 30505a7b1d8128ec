"""Small measuring helpers shared by the benchmarks: CPU/wall stopwatch, memory, quantiles, a measurement in a child."""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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


def run_module(module: str, quick: bool, timeout: float) -> dict[str, Any]:
    """`python -m module --json` in a child process (its threads, sockets and event loop end with it): the figures
    of its RESULT line (see `main`), or {"error": why there are none}."""
    cmd = [sys.executable, "-m", module, "--json"] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT "):])
            return result
    return {"error": (done.stderr or done.stdout)[-1500:]}


def section(title: str, what: str, figures: dict[str, Any] | None, body: Callable[[dict[str, Any]], list[str]]) -> str:
    """A BENCHMARKS.md section: nothing without figures, the failure when the run failed, else the title then body's lines."""
    if not figures:
        return ""
    out = ["", title, ""]
    if "error" in figures:
        return "\n".join([*out, f"The {what} benchmark failed: `{figures['error'][-500:]}`", ""])
    return "\n".join([*out, *body(figures)])


def main(
    description: str | None, measure: Callable[[bool], dict[str, Any]], section: Callable[[dict[str, Any] | None], str]
) -> None:
    """A benchmark's command line: measure (`--quick`: less) and print the BENCHMARKS.md section, or with `--json`
    one RESULT line of the figures (what run_module reads)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    results = measure(opts.quick)
    if opts.json:
        print("RESULT " + json.dumps(results), flush=True)
    else:
        print(section(results))
