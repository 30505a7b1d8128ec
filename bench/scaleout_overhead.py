"""Queue overhead per check against the in-process scheduler, in the same run, repeated: mean and spread.

Each round runs the same light inventory (TCP checks of a local listener every 5 s, below saturation)
once in-process and once on the queue with two workers, on fresh scratch databases of the local
PostgreSQL. CPU is read from /proc: pocketnoc's processes, and every PostgreSQL backend separately.

    python -m bench.scaleout_overhead [--rounds 3] [--devices 400] [--window 30]   # prints JSON and a Markdown table
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

from bench.scaleout import _listener, _pg_user, inprocess_case, queue_case


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values),
            "stdev": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip


def run(rounds: int, devices: int, warmup: float, window: float) -> dict[str, Any]:
    """`rounds` pairs of (in-process, queue with 2 workers), alternating so both see the same machine."""
    user, target = _pg_user(), _listener()
    out: dict[str, Any] = {"devices": devices, "rounds": [], "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    for i in range(rounds):
        print(f"[overhead] round {i + 1}/{rounds}", file=sys.stderr, flush=True)
        pair = {
            "inprocess": inprocess_case(user, devices, target, warmup, window),
            "queue": queue_case(user, devices, 2, target, warmup, window),
            "at": time.time(),
        }
        out["rounds"].append(pair)
    for mode in ("inprocess", "queue"):
        rows = [r[mode] for r in out["rounds"]]
        out[mode] = {
            "checks_per_s": _spread([r["checks_per_s"] for r in rows]),
            "cpu_ms_per_check": _spread([r["cpu_ms_per_check"] for r in rows]),
            "pg_cpu_ms_per_check": _spread([r["pg_cpu_ms_per_check"] for r in rows]),
            "total_ms_per_check": _spread([r["cpu_ms_per_check"] + r["pg_cpu_ms_per_check"] for r in rows]),
            "lag_p99": _spread([float(r["lag_p99"] or 0.0) for r in rows]),
        }
    return out


def _cell(s: dict[str, float], digits: int = 2) -> str:
    return f"{s['mean']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def table(results: dict[str, Any]) -> str:
    """The BENCHMARKS.md table: mean (min–max) over the rounds."""
    lines = [
        f"{len(results['rounds'])} rounds, {results['devices']} devices, one TCP check each every 5 s; mean (min–max):",
        "",
        "| scheduler | checks/s | lag p99 | pocketnoc CPU ms/check | PostgreSQL CPU ms/check | total ms/check |",
        "|---|---|---|---|---|---|",
    ]
    for mode, label in (("inprocess", "in-process (APScheduler)"), ("queue", "queue, 2 workers, batches")):
        r = results[mode]
        lines.append(f"| {label} | {_cell(r['checks_per_s'], 1)} | {_cell(r['lag_p99'], 3)} s | {_cell(r['cpu_ms_per_check'])} | "
                     f"{_cell(r['pg_cpu_ms_per_check'])} | {_cell(r['total_ms_per_check'])} |")  # fmt: skip
    ratio = results["queue"]["total_ms_per_check"]["mean"] / results["inprocess"]["total_ms_per_check"]["mean"]
    lines += ["", f"Queue / in-process, total CPU per check: {ratio:.2f}×."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=400)
    parser.add_argument("--warmup", type=float, default=15.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    result = run(args.rounds, args.devices, args.warmup, args.window)
    print(json.dumps(result, indent=1))
    print(table(result), file=sys.stderr)
