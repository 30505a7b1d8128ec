"""Counters to per-second rates, with Counter32/Counter64 wrap and counter-reset handling."""

from __future__ import annotations

from agents.base import Sample
from server.store.metrics import labels_key

WRAP = {"counter32": 2**32, "counter64": 2**64}


def rate_name(metric: str) -> tuple[str, float]:
    """Name and scale of a counter's rate: octets become bits per second."""
    if metric.endswith("_octets"):
        return metric.removesuffix("_octets") + "_bps", 8.0
    return metric + "_rate", 1.0


class RateTracker:
    """Remembers the last counter values per series and turns new ones into rates."""

    def __init__(self) -> None:
        # (device, check) -> (metric, labels key) -> (value, ts): one check's memory is one entry to hand over.
        self._last: dict[tuple[int, str], dict[tuple[str, str], tuple[float, float]]] = {}
        self._uptime: dict[tuple[int, str], float] = {}

    def forget(self, device_id: int) -> None:
        """Drop state of a deleted device."""
        self._last = {k: v for k, v in self._last.items() if k[0] != device_id}
        self._uptime = {k: v for k, v in self._uptime.items() if k[0] != device_id}

    def export(self, device_id: int, check: str) -> dict[str, object]:
        """One check's last counters and uptime as JSON, for the next process that runs it."""
        last = self._last.get((device_id, check), {})
        return {"last": [[m, lbl, v, ts] for (m, lbl), (v, ts) in last.items()], "uptime": self._uptime.get((device_id, check))}

    def restore(self, device_id: int, check: str, state: dict[str, object]) -> None:
        """Take over what `export` gave (from another worker); malformed parts are ignored."""
        rows = state.get("last")
        last: dict[tuple[str, str], tuple[float, float]] = {}
        for row in rows if isinstance(rows, list) else ():
            if isinstance(row, list) and len(row) == 4 and isinstance(row[2], int | float) and isinstance(row[3], int | float):
                last[(str(row[0]), str(row[1]))] = (float(row[2]), float(row[3]))
        self._last[(device_id, check)] = last
        uptime = state.get("uptime")
        if isinstance(uptime, int | float):
            self._uptime[(device_id, check)] = float(uptime)
        else:
            self._uptime.pop((device_id, check), None)

    def convert(
        self, device_id: int, check: str, samples: list[Sample], uptime: float | None = None
    ) -> list[tuple[str, str, float]]:
        """Gauges pass through; counters become rates (nothing on first sight, wrap or reset)."""
        rebooted = False
        if uptime is not None:
            before = self._uptime.get((device_id, check))
            rebooted = before is not None and uptime + 1 < before
            self._uptime[(device_id, check)] = uptime
        last = self._last.setdefault((device_id, check), {})
        out: list[tuple[str, str, float]] = []
        for s in samples:
            key_labels = labels_key(s.labels)
            if s.kind == "gauge":
                out.append((s.metric, key_labels, float(s.value)))
                continue
            key = (s.metric, key_labels)
            previous = last.get(key)
            last[key] = (float(s.value), s.ts)
            if previous is None or rebooted:
                continue
            value_before, ts_before = previous
            elapsed = s.ts - ts_before
            if elapsed <= 0:
                continue
            delta = float(s.value) - value_before
            if delta < 0:
                if s.kind == "counter64":
                    continue  # a reset: a 64-bit counter does not wrap in practice
                delta += WRAP[s.kind]
            name, scale = rate_name(s.metric)
            out.append((name, key_labels, delta * scale / elapsed))
        return out
