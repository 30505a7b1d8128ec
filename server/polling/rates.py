"""Counters to per-second rates, with Counter32/Counter64 wrap and counter-reset handling."""

from __future__ import annotations

import sys
from array import array

from agents.base import Sample
from server.store.metrics import labels_key, series_key, shared_index

WRAP = {"counter32": 2**32, "counter64": 2**64}
_RATE_NAMES: dict[str, tuple[str, float]] = {}


def rate_name(metric: str) -> tuple[str, float]:
    """Name and scale of a counter's rate: octets become bits per second."""
    found = _RATE_NAMES.get(metric)
    if found is None:
        octets = metric.endswith("_octets")
        found = (metric.removesuffix("_octets") + "_bps", 8.0) if octets else (metric + "_rate", 1.0)
        if len(_RATE_NAMES) < 10_000:  # metric names are few; a flood of odd ones is not remembered
            found = _RATE_NAMES[metric] = (sys.intern(found[0]), found[1])
    return found


class _Counters:
    """One check's last counter values: series key -> slot (a dict shared by devices of one model, see
    `shared_index`), values and times in two float arrays: about 16 bytes per counter and device."""

    __slots__ = ("index", "stamps", "values")

    def __init__(self) -> None:
        self.index: dict[tuple[str, str], int] = {}
        self.values = array("d")
        self.stamps = array("d")


class RateTracker:
    """Remembers the last counter values per series and turns new ones into rates."""

    def __init__(self) -> None:
        # (device, check) -> that check's counters: one check's memory is one entry to hand over.
        self._last: dict[tuple[int, str], _Counters] = {}
        self._uptime: dict[tuple[int, str], float] = {}

    def forget(self, device_id: int) -> None:
        """Drop state of a deleted device."""
        self._last = {k: v for k, v in self._last.items() if k[0] != device_id}
        self._uptime = {k: v for k, v in self._uptime.items() if k[0] != device_id}

    def export(self, device_id: int, check: str) -> dict[str, object]:
        """One check's last counters and uptime as JSON, for the next process that runs it."""
        last = self._last.get((device_id, check))
        rows = [] if last is None else [[m, lbl, last.values[i], last.stamps[i]] for (m, lbl), i in last.index.items()]
        return {"last": rows, "uptime": self._uptime.get((device_id, check))}

    def restore(self, device_id: int, check: str, state: dict[str, object]) -> None:
        """Take over what `export` gave (from another worker); malformed parts are ignored."""
        rows = state.get("last")
        last = _Counters()
        for row in rows if isinstance(rows, list) else ():
            if isinstance(row, list) and len(row) == 4 and isinstance(row[2], int | float) and isinstance(row[3], int | float):
                key = series_key(str(row[0]), str(row[1]))
                slot = last.index.get(key)
                if slot is None:
                    last.index[key] = len(last.values)
                    last.values.append(float(row[2]))
                    last.stamps.append(float(row[3]))
                else:
                    last.values[slot], last.stamps[slot] = float(row[2]), float(row[3])
        last.index = shared_index(last.index)
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
        last = self._last.get((device_id, check))
        if last is None:
            last = self._last[(device_id, check)] = _Counters()
        index, values, stamps = last.index, last.values, last.stamps
        grown = False
        out: list[tuple[str, str, float]] = []
        keys: dict[int, str] = {}  # a collector shares one labels dict among an interface's samples: encode it once
        for s in samples:
            labels = s.labels
            if labels:
                key_labels = keys.get(id(labels))
                if key_labels is None:
                    key_labels = keys[id(labels)] = sys.intern(labels_key(labels))
            else:
                key_labels = ""
            value = float(s.value)
            if s.kind == "gauge":
                out.append((s.metric, key_labels, value))
                continue
            key = (s.metric, key_labels)
            slot = index.get(key)
            if slot is None:
                if not grown:  # the index may be shared with other devices: add to a copy
                    index, grown = dict(index), True
                index[series_key(s.metric, key_labels)] = len(values)
                values.append(value)
                stamps.append(s.ts)
                continue
            value_before, ts_before = values[slot], stamps[slot]
            values[slot] = value
            stamps[slot] = s.ts
            if rebooted:
                continue
            elapsed = s.ts - ts_before
            if elapsed <= 0:
                continue
            delta = value - value_before
            if delta < 0:
                if s.kind == "counter64":
                    continue  # a reset: a 64-bit counter does not wrap in practice
                delta += WRAP[s.kind]
            name, scale = rate_name(s.metric)
            out.append((name, key_labels, delta * scale / elapsed))
        if grown:
            last.index = shared_index(index)
        return out
