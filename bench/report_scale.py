"""Tables for repeated one-process scale runs (`bench.run --scale-only N,M --repeat 3 --neighbour`): every run, then
the headline figures per device count as median and range, with where the time went (probe figures)."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

TARGETS = {5000: (5.0, 300.0), 10000: (5.0, 400.0)}  # devices -> (lag p99 s, peak RSS MB)


def _done(s: dict[str, Any]) -> float:
    return s["polls_done"] / max(1, s["polls_due"])


def runs_table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per run, with the machine's load and the neighbour beside it."""
    out = [
        "| devices | run | load (1 min) before | neighbour (its CPU) | polls done / due | lag p50 | lag p99 | lag max | "
        "CPU (of one core) | CPU ms / poll | waited for a CPU | peak RSS | loop lag p99 / max | writer batch p99 / max "
        "(outcomes) | GC pauses total / max | due per second (max / mean) | start-up over after |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in rows:
        if "error" in s:
            out.append(f"| {s['devices']:,} | {s.get('run', '')} | {s.get('load_before', 0):.1f} | "
                       f"error: {s['error'][-160:]} |")
            continue
        p, due = s.get("probe", {}), s.get("probe", {}).get("due", {})
        out.append(
            f"| {s['devices']:,} | {s.get('run', 1)} | {s.get('load_before', 0):.1f} | {s.get('neighbour', 'none')} "
            f"({s.get('neighbour_cpu_util', 0) * 100:.0f} %) | {s['polls_done']:,} / {s['polls_due']:,} "
            f"({_done(s) * 100:.0f} %) | {s['lag_p50_s']:.2f} s | {s['lag_p99_s']:.2f} s | {s['lag_max_s']:.2f} s | "
            f"{s['cpu_util'] * 100:.0f} % | {s['cpu_ms_per_poll']:.1f} | {s.get('waited_for_cpu_util', 0) * 100:.0f} % | "
            f"{s['rss_peak_mb']:.0f} MB | {p.get('loop_lag_p99_s', 0):.2f} / {p.get('loop_lag_max_s', 0):.2f} s | "
            f"{p.get('writer_batch_p99_s', 0):.2f} / {p.get('writer_batch_max_s', 0):.2f} s "
            f"({p.get('writer_batch_max_outcomes', 0)}) | {p.get('gc_pause_total_s', 0):.1f} / "
            f"{p.get('gc_pause_max_s', 0):.2f} s | {due.get('max_per_second', 0)} / {due.get('mean_per_second', 0):.0f} | "
            f"{_settled(s)} |"
        )
    return out


def _settled(s: dict[str, Any]) -> str:
    """When the start-up (three polls a device, recent lag p99 < 5 s) was over, for runs that waited for it."""
    if not s.get("settle_max_s"):
        return "not waited for"
    settled = s.get("settled_s")
    return f"{settled:.0f} s" if settled is not None else f"not within {s['warmup_s'] + s['settle_max_s']:.0f} s"


def _spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def headline(rows: list[dict[str, Any]]) -> list[str]:
    """Median (range) over the runs of each device count, against the targets."""
    out = ["| devices | runs | polls done | lag p99 | peak RSS | CPU ms / poll | targets (p99, RSS, ≥ 98 % done) |",
           "|---:|---:|---:|---:|---:|---:|---|"]
    for devices in sorted({s["devices"] for s in rows}):
        ok = [s for s in rows if s["devices"] == devices and "error" not in s]
        if not ok:
            continue
        lag, rss = TARGETS.get(devices, (5.0, 400.0))
        met = [s["lag_p99_s"] < lag and s["rss_peak_mb"] < rss and _done(s) >= 0.98 for s in ok]
        out.append(
            f"| {devices:,} | {len(ok)} | {_spread([_done(s) * 100 for s in ok], '{:.0f} %')} | "
            f"{_spread([s['lag_p99_s'] for s in ok], '{:.2f} s')} | {_spread([s['rss_peak_mb'] for s in ok], '{:.0f} MB')} | "
            f"{_spread([s['cpu_ms_per_poll'] for s in ok], '{:.1f}')} | < {lag:.0f} s, < {rss:.0f} MB: "
            f"met in {sum(met)} of {len(ok)} runs |"
        )
    return out


def main() -> None:
    """`python -m bench.report_scale results.json`: print both tables."""
    results = json.loads(Path(sys.argv[1]).read_text())
    rows = results.get("scale", [])
    m = results.get("machine", {})
    print(f"load average (1 min) at start / end: {m.get('load_start', 0):.2f} / {m.get('load_end', 0):.2f}; "
          f"CPU calibration {m.get('calibration_ms', 0):.0f} ms")
    c = (results.get("pipeline") or [{}])[0]
    if c:
        print(f"(c) whole pipeline, same run: {c['cpu_ms_per_poll']:.1f} ms CPU per poll (event loop "
              f"{c['loop_thread_ms_per_poll']:.1f} ms, writer {c['writer_thread_ms_per_poll']:.1f} ms)")
    print("\n".join(["", *headline(rows), "", *runs_table(rows)]))


if __name__ == "__main__":
    main()
