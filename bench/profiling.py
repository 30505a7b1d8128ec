"""Where the time goes: per-thread and per-process CPU from /proc, and cProfile totals grouped by layer."""

from __future__ import annotations

import cProfile
import os
import pstats
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")

# Ordered (needle in file path or builtin name, layer); the first match wins.
LAYERS: tuple[tuple[str, str], ...] = (
    ("pyasn1/codec", "pyasn1 BER encode/decode"),
    ("pyasn1/", "pyasn1 types"),
    ("pysnmp/", "pysnmp (dispatch, PDUs, transport)"),
    ("/agents/", "agents (collector: decode, walk, Reading)"),
    ("/server/", "server (poller, rates, status, writer)"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("sqlite3", "SQLite (C)"),
    ("apscheduler/", "APScheduler"),
    ("json", "json"),
    ("asyncio/", "asyncio + selectors"),
    ("selectors", "asyncio + selectors"),
    ("socket", "socket I/O"),
)


def _layer(filename: str, func: str) -> str:
    text = filename if filename != "~" else func
    for needle, layer in LAYERS:
        if needle in text:
            return layer
    return "other (builtins, stdlib)"


def thread_cpu(tid: int | None) -> float:
    """CPU seconds of one thread of this process (by native id), from /proc."""
    if tid is None:
        return 0.0
    return _stat_cpu(Path(f"/proc/self/task/{tid}/stat"))


def pid_cpu(pid: int) -> float:
    """CPU seconds of a process, from /proc."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def _stat_cpu(path: Path, children: bool = False) -> float:
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / _TICK


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of processes and all their descendants, including reaped children (sshd sessions)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    total, todo, seen = 0.0, list(roots), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _stat_cpu(Path(f"/proc/{pid}/stat"), children=True)
        todo.extend(parents.get(pid, []))
    return total


class Profile:
    """cProfile of the event-loop thread, summarised by layer and by a few key functions."""

    KEY_FUNCS = ("collect", "walk_columns", "exchange", "build_reading", "convert", "run_check", "decode",
                 "_recv_callback", "send_pdu", "apply_outcomes", "write_samples")

    def __init__(self) -> None:
        self._prof = cProfile.Profile()

    def start(self) -> None:
        """Start profiling this thread."""
        self._prof.enable()

    def stop(self) -> None:
        """Stop profiling."""
        self._prof.disable()

    def report(self, top: int = 12) -> dict[str, Any]:
        """Share of own time per layer, the top functions by own time, and key functions' cumulative time."""
        stats = pstats.Stats(self._prof)
        raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
        total = sum(v[2] for v in raw.values()) or 1.0
        layers: dict[str, float] = {}
        for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in raw.items():
            name = _layer(filename, func)
            layers[name] = layers.get(name, 0.0) + tt
        funcs = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
        cumulative: dict[str, float] = {}
        for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in raw.items():
            if func in self.KEY_FUNCS and ("/agents/" in filename or "/server/" in filename or "pysnmp" in filename):
                key = f"{Path(filename).parent.name}/{Path(filename).name}:{func}"
                cumulative[key] = max(cumulative.get(key, 0.0), ct)
        return {
            "total_s": total,
            "layers": {k: v / total for k, v in sorted(layers.items(), key=lambda kv: -kv[1])},
            "top": [
                {"func": f"{_short(fn)}:{func}", "own_share": v[2] / total, "calls": v[1]}
                for (fn, _line, func), v in funcs
            ],
            "cumulative_share": {k: v / total for k, v in sorted(cumulative.items(), key=lambda kv: -kv[1])},
        }


def _short(filename: str) -> str:
    if filename == "~":
        return "builtin"
    parts = Path(filename).parts
    for anchor in ("site-packages", "main", "python3.11"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) + 1 :])
    return Path(filename).name


def sched_wait() -> float:
    """Seconds this process's threads spent runnable but waiting for a CPU (other load on the machine)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine so far, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)
