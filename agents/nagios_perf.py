"""The Nagios plug-in output convention, parsed without trusting it: status text, long output, perfdata, ranges.

Output: the first line is `TEXT | perfdata`; further lines are long output, and from the first of them that has
a `|` on, what follows the `|` (and every later line) is more perfdata. Perfdata are space-separated
`'label'=value[UOM];warn;crit;min;max` (a quoted label may hold spaces, `''` is a quote). Anything malformed is
skipped with a note, never an exception: the output comes from a program we do not control.
"""

from __future__ import annotations

import math
import re
from typing import Literal, NamedTuple

PluginState = Literal["ok", "warning", "critical", "unknown"]
STATES: tuple[PluginState, ...] = ("ok", "warning", "critical", "unknown")
MAX_PERF = 50  # perfdata items kept per run
MAX_NOTES = 10
LABEL_MAX = 64
_VALUE = re.compile(r"^([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)([A-Za-z%]*)$")
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^(@)?(?:(~|{_NUMBER})?:)?(~|{_NUMBER})?$")
# UOM -> (metric, scale): times in milliseconds, sizes in bytes (the plug-ins' KB/MB are binary), counters count.
_UNITS: dict[str, tuple[str, float]] = {
    "": ("plugin_value", 1.0),
    "s": ("plugin_ms", 1000.0),
    "ms": ("plugin_ms", 1.0),
    "us": ("plugin_ms", 0.001),
    "%": ("plugin_pct", 1.0),
    "B": ("plugin_bytes", 1.0),
    "KB": ("plugin_bytes", 1024.0),
    "MB": ("plugin_bytes", 1024.0**2),
    "GB": ("plugin_bytes", 1024.0**3),
    "TB": ("plugin_bytes", 1024.0**4),
    "KiB": ("plugin_bytes", 1024.0),
    "MiB": ("plugin_bytes", 1024.0**2),
    "GiB": ("plugin_bytes", 1024.0**3),
    "TiB": ("plugin_bytes", 1024.0**4),
    "c": ("plugin_count", 1.0),
}


class Perf(NamedTuple):
    """One perfdata item, value scaled to its metric's unit; warn/crit are the plug-in's range texts."""

    label: str
    metric: str
    value: float
    uom: str
    warn: str
    crit: str
    counter: bool


class Parsed(NamedTuple):
    """What a plug-in printed: its status line, the long output lines, perfdata and notes on what was skipped."""

    text: str
    long: list[str]
    perf: list[Perf]
    notes: list[str]


def state_of_exit(code: int | None) -> PluginState:
    """Exit 0/1/2/3 -> ok/warning/critical/unknown; anything else (127, a signal, none) is unknown."""
    return STATES[code] if code in (0, 1, 2, 3) else "unknown"


def exit_problem(code: int | None) -> str | None:
    """Why an exit status is not a plug-in's answer at all, in words (None for 0-3)."""
    if code in (0, 1, 2, 3):
        return None
    if code is None:
        return "the plug-in did not exit"
    if code < 0:
        return f"the plug-in was killed by signal {-code}"
    if code == 126:
        return "the plug-in is not executable (exit 126)"
    if code == 127:
        return "the plug-in was not found (exit 127)"
    if code > 128:
        return f"the plug-in died of signal {code - 128} (exit {code})"
    return f"the plug-in exited {code}, not 0-3"


def _tokens(text: str, notes: list[str]) -> list[str]:
    """Split perfdata on spaces, keeping a quoted label's spaces ('' inside quotes is one quote)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        buf: list[str] = []
        if text[i] == "'":
            i += 1
            while i < n:
                if text[i] == "'" and i + 1 < n and text[i + 1] == "'":
                    buf.append("'")
                    i += 2
                elif text[i] == "'":
                    i += 1
                    break
                else:
                    buf.append(text[i])
                    i += 1
            else:
                notes.append("perfdata: unterminated quoted label")
                return out
            buf.append("\x00")  # marks the end of a quoted label: '=' inside it is part of the label
        while i < n and not text[i].isspace():
            buf.append(text[i])
            i += 1
        out.append("".join(buf))
    return out


def _item(token: str, notes: list[str]) -> Perf | None:
    if "\x00" in token:
        label, _, rest = token.partition("\x00")
        if not rest.startswith("="):
            notes.append(f"perfdata: no '=' after label {label[:40]!r}")
            return None
        rest = rest[1:]
    else:
        label, eq, rest = token.partition("=")
        if not eq:
            notes.append(f"perfdata: {token[:40]!r} is not label=value")
            return None
    label = label.strip()
    if not label or len(label) > LABEL_MAX:
        notes.append("perfdata: an empty or over-long label was skipped")
        return None
    fields = rest.split(";")
    found = _VALUE.match(fields[0])
    if found is None:
        if fields[0] != "U":  # U is the plug-in saying it could not measure: nothing to note
            notes.append(f"perfdata: {label[:40]!r} has no number ({fields[0][:20]!r})")
        return None
    uom = found.group(2)
    unit = _UNITS.get(uom)
    if unit is None:
        notes.append(f"perfdata: {label[:40]!r} has an unknown unit {uom[:10]!r}; kept without it")
        unit = _UNITS[""]
    value = float(found.group(1)) * unit[1]
    if not math.isfinite(value):
        notes.append(f"perfdata: {label[:40]!r} is out of range")
        return None
    warn, crit = [*fields[1:3], "", ""][:2]
    return Perf(label, unit[0], value, uom if uom in _UNITS else "", warn.strip(), crit.strip(), uom == "c")


def parse_perfdata(text: str, notes: list[str]) -> list[Perf]:
    """Every well-formed item of a perfdata text (at most MAX_PERF); notes say what was skipped."""
    out: list[Perf] = []
    for token in _tokens(text, notes):
        item = _item(token, notes)
        if item is not None:
            if len(out) >= MAX_PERF:
                notes.append(f"perfdata: more than {MAX_PERF} items; the rest skipped")
                break
            out.append(item)
    return out


def parse_output(text: str) -> Parsed:
    """Split a plug-in's (already cleaned) output into status text, long output and perfdata."""
    lines = text.replace("\r\n", "\n").split("\n")
    first, _, perf_text = lines[0].partition("|")
    long: list[str] = []
    perf_parts = [perf_text]
    in_perf = False
    for line in lines[1:]:
        if in_perf:
            perf_parts.append(line)
        elif "|" in line:
            before, _, after = line.partition("|")
            if before.strip():
                long.append(before.rstrip())
            perf_parts.append(after)
            in_perf = True
        else:
            long.append(line)
    while long and not long[-1].strip():
        long.pop()
    notes: list[str] = []
    perf = parse_perfdata(" ".join(perf_parts), notes)
    if len(notes) > MAX_NOTES:
        notes[MAX_NOTES:] = [f"and {len(notes) - MAX_NOTES} more notes"]
    return Parsed(first.strip(), long, perf, notes)


def _bound(text: str, low: bool) -> float | None:
    if text == "~":
        return -math.inf if low else math.inf
    return float(text)


def outside(range_text: str, value: float) -> bool | None:
    """Whether value alerts against a Nagios range (`10`, `10:`, `~:10`, `10:20`, `@10:20`); None if unreadable."""
    found = _RANGE.match(range_text.strip())
    if not range_text.strip() or found is None or (found.group(2) is None and found.group(3) is None):
        return None
    inside, start, end = found.group(1) == "@", found.group(2), found.group(3)
    low = 0.0 if start is None else _bound(start, True)
    high = math.inf if end is None else _bound(end, False)
    if low is None or high is None or low > high:
        return None
    within = low <= value <= high
    return within if inside else not within


def threshold_state(perf: list[Perf], notes: list[str]) -> PluginState:
    """The worst state the perfdata's own warn/crit ranges give (values compared in the plug-in's unit)."""
    worst: PluginState = "ok"
    for item in perf:
        raw = item.value / _UNITS.get(item.uom, _UNITS[""])[1]
        for state, text in (("critical", item.crit), ("warning", item.warn)):
            if not text:
                continue
            hit = outside(text, raw)
            if hit is None:
                notes.append(f"perfdata: {item.label[:40]!r} has an unreadable {state} range {text[:20]!r}")
            elif hit:
                if state == "critical" or worst == "ok":
                    worst = "critical" if state == "critical" else "warning"
                break
    return worst
