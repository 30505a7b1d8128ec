"""Long device tables (interfaces, storage, file systems, services) as a phone shows them: what is wrong first,
the rest behind a count, and a filter that works as a plain query parameter."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NEAR_FULL_PCT = 90.0
RECENT_CHANGE_S = 15 * 60  # a port that changed state this recently is shown with the problems
ERRORS_PER_S = 0.1  # errors at least this often (one every 10 s) make a port a problem; a rare one is noise
DISCARDS_PER_S = 1.0  # discards are normal in bursts of congestion: only a steady stream is a problem
_RANK = {"flapping": 0, "down": 0, "alert": 0, "errors": 1, "discards": 2}  # alerting ports first, then errors ...
FILTER_MAX = 64


@dataclass(frozen=True, slots=True)
class Row:
    """One table row and, when it is a problem, why (words: 'down', 'errors', 'flapping', 'near full')."""

    item: Mapping[str, Any]
    why: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Triage:
    """A table split for a phone: problems first (all shown), the rest (collapsed), and the filter in force."""

    problems: list[Row] = field(default_factory=list)
    rest: list[Row] = field(default_factory=list)
    total: int = 0
    query: str = ""

    @property
    def shown(self) -> int:
        """Rows matching the filter."""
        return len(self.problems) + len(self.rest)


def _matches(item: Mapping[str, Any], query: str, keys: Iterable[str]) -> bool:
    if not query:
        return True
    wanted = query.casefold()
    return any(wanted in str(item.get(k) or "").casefold() for k in keys)


def _split(rows: list[Row], query: str, keys: tuple[str, ...]) -> Triage:
    kept = [r for r in rows if _matches(r.item, query, keys)]
    problems = sorted((r for r in kept if r.why), key=lambda r: min(_RANK.get(w, 3) for w in r.why))  # stable
    return Triage(problems, [r for r in kept if not r.why], len(rows), query)


def interfaces(
    items: Sequence[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]], uptime_s: float | None, query: str = ""
) -> Triage:
    """Ports with an open alert (down after being up, errors), errors or discards now, or a recent change, first."""
    flagged: dict[str, list[str]] = {}
    for a in alerts:
        index = (a.get("labels") or {}).get("ifIndex")
        if index is None:
            continue
        words = flagged.setdefault(str(index), [])
        words.append("flapping" if a.get("flapping") else "down" if a.get("rule") == "interface-down" else "alert")
    rows = []
    for item in items:
        why = list(dict.fromkeys(flagged.get(str(item.get("index")), [])))
        if (item.get("in_errors_rate") or 0) + (item.get("out_errors_rate") or 0) >= ERRORS_PER_S:
            why.append("errors")
        if (item.get("in_discards_rate") or 0) + (item.get("out_discards_rate") or 0) >= DISCARDS_PER_S:
            why.append("discards")
        changed = item.get("last_change_s")
        if (
            isinstance(changed, int | float)
            and uptime_s is not None
            and changed > 0
            and 0 <= uptime_s - changed < RECENT_CHANGE_S
        ):
            why.append(f"changed {max(1, round((uptime_s - changed) / 60))} min ago")
        rows.append(Row(item, tuple(why)))
    return _split(rows, query, ("name", "alias", "descr", "oper"))


def usage(items: Sequence[Mapping[str, Any]], name_key: str, query: str = "") -> Triage:
    """Storage or file systems: near full (or inodes near full) first."""
    rows = []
    for item in items:
        why = []
        if (item.get("used_pct") or 0) >= NEAR_FULL_PCT:
            why.append("near full")
        if (item.get("inodes_used_pct") or 0) >= NEAR_FULL_PCT:
            why.append("inodes near full")
        rows.append(Row(item, tuple(why)))
    return _split(rows, query, (name_key, "type"))


def clean_query(raw: str) -> str:
    """A filter as typed, cut and stripped of control characters (it is only ever compared, never run)."""
    return "".join(c for c in raw if c.isprintable())[:FILTER_MAX].strip()
