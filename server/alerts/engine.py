"""Alert evaluation as a pure function: observations + previous key states → new states + events.

One key = (rule, device, label set). Its transition table (each row has a test):

| row | status  | condition now                       | → status | event        |
|-----|---------|-------------------------------------|----------|--------------|
| 0   | (none)  | rule has `arm`, arm false/no data   | (none)   | - (ignored)  |
|     | (none)  | rule has `arm`, arm true            | ok       | - (armed)    |
| 1   | ok      | expr false (or no data)             | ok       | -            |
| 2   | ok      | expr true, for = 0                  | firing   | fire         |
| 3   | ok      | expr true, for > 0                  | pending  | -            |
| 4   | pending | expr true, held >= for              | firing   | fire         |
| 5   | pending | expr true, held < for               | pending  | -            |
| 6   | pending | expr false                          | ok       | -            |
| 7   | firing  | clear true (clear = not expr if no  | ok       | resolve      |
|     |         | clear expression), fired longer     |          |              |
|     |         | than `window` ago (or settle = 0)   |          |              |
| 8   | firing  | clear false                         | firing   | update       |
| 9   | firing  | clear true, the 2nd change in       | held     | hold         |
|     |         | `window` (a resolve soon after the  |          |              |
|     |         | fire), or flapping                  |          |              |
| 10  | held    | clear true for `settle` seconds     | ok       | resolve      |
| 11  | held    | expr true again, flapping already   | firing   | update       |
| 12  | held    | expr true again, not yet flapping   | firing   | update,      |
|     |         | (the 3rd change)                    | flapping | flap_start   |

"held" is a firing alert kept open while its condition is clear (KeyState.held_open): from the second fire/resolve
change in the window the episode is treated as flapping — its resolve waits until the condition has been clear for
`settle` seconds (its `since` is when it last cleared). A failure in that time is the same alert, marked flapping
once. So an episode notifies at most the first trigger, one "flapping" message and one resolve ("stable again").

A key with no data in this round (device unreachable, metric gone) is left as it is: missing
data never resolves an alert. Acknowledge, snooze, silence and dependencies do not change these
states; they decide who is told (see server/alerts/writer_hook.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from server.alerts.rules import Clause, Rule

Status = Literal["ok", "pending", "firing"]
FLAP_WINDOW = 600.0  # seconds in which fire/resolve changes are counted
FLAP_START = 2  # changes within the window from which a resolve waits to settle: the second one
FLAP_SETTLE = 180.0  # seconds the condition must stay clear before such an alert resolves ("stable again")


@dataclass(frozen=True, slots=True)
class Flap:
    """Flapping thresholds (settings flap_window_seconds, flap_settle_seconds)."""

    window: float = FLAP_WINDOW
    settle: float = FLAP_SETTLE


DEFAULT_FLAP = Flap()


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the engine remembers about one (rule, device, labels) key."""

    status: Status = "ok"
    since: float = 0.0
    value: float | None = None
    changes: tuple[float, ...] = ()
    flapping: bool = False
    held_open: bool = False  # firing only because it flaps (the condition is clear)


@dataclass(frozen=True, slots=True)
class Event:
    """Something the store must record for a key."""

    kind: Literal["fire", "resolve", "update", "flap_start", "hold"]
    value: float | None


@dataclass(slots=True)
class Observation:
    """One device's data for this round: state, and metric values by label set."""

    device_id: int
    name: str
    state: str
    kind: str | None = None
    tags: frozenset[str] = frozenset()
    metrics: dict[str, dict[str, tuple[dict[str, str], float]]] = field(
        default_factory=dict
    )  # metric -> labels key -> (labels, value)


def applies(rule: Rule, obs: Observation) -> bool:
    """Does the rule's match select this device?"""
    m = rule.match
    if m.devices and obs.name not in m.devices:
        return False
    if m.tags and not obs.tags.intersection(m.tags):
        return False
    return not (m.kinds and obs.kind not in m.kinds)


def holds(clauses: tuple[Clause, ...], values: Mapping[str, float | str]) -> bool | None:
    """None when a clause has no value (no data), else whether all clauses hold."""
    for clause in clauses:
        if clause.name not in values:
            return None
        if not clause.test(values[clause.name]):
            return False
    return True


_NAMES: dict[tuple[str, str | None], tuple[str, ...]] = {}


def _metric_names(rule: Rule) -> tuple[str, ...]:
    key = (rule.expr, rule.clear)
    found = _NAMES.get(key)
    if found is None:
        names = {c.name for c in rule.clauses} | {c.name for c in rule.clear_clauses or ()}
        found = _NAMES[key] = tuple(sorted(names - {"state"}))  # arm's names are among expr's
    return found


def candidates(rule: Rule, obs: Observation) -> dict[str, tuple[dict[str, str], dict[str, float | str]]]:
    """Per label set: the labels and the values the rule's clauses need (joined on identical labels)."""
    metric_names = _metric_names(rule)
    out: dict[str, tuple[dict[str, str], dict[str, float | str]]] = {}
    if not metric_names:
        out[""] = ({}, {"state": obs.state})
        return out
    first, *rest = metric_names
    for key, (labels, value) in obs.metrics.get(first, {}).items():
        if rule.match.labels and any(labels.get(k) != v for k, v in rule.match.labels.items()):
            continue
        values: dict[str, float | str] = {first: value, "state": obs.state}
        for other in rest:
            found = obs.metrics.get(other, {}).get(key)
            if found is not None:
                values[other] = found[1]
        out[key] = (labels, values)
    return out


def armed(rule: Rule, prev: KeyState | None, values: Mapping[str, float | str]) -> bool:
    """Row 0: is this key watched? A rule with `arm` ignores a key until arm holds once; its stored state
    (even "ok") then remembers it, across restarts."""
    arm = rule.arm_clauses
    return arm is None or prev is not None or holds(arm, values) is True


def step(rule: Rule, prev: KeyState | None, values: Mapping[str, float | str], now: float,
         flap: Flap = DEFAULT_FLAP) -> tuple[KeyState, list[Event]]:
    """Advance one key by one observation (the table in this module's docstring)."""
    state = prev or KeyState(since=now)
    cond = holds(rule.clauses, values)
    if cond is None:
        return state, []
    if not cond and state.status == "ok" and not state.changes:
        return state, []  # the common case: nothing wrong, nothing remembered (row 1)
    first = rule.clauses[0].name
    raw = values.get(first)
    value = float(raw) if isinstance(raw, int | float) else None
    changes = tuple(t for t in state.changes if now - t <= flap.window)
    if state.status == "firing":
        clear = holds(rule.clear_clauses, values) if rule.clear_clauses else (not cond)
        if state.held_open:
            return _held(state, bool(clear), value, changes, now, flap)
        if clear:
            changes = (*changes, now)
            if flap.settle > 0 and (state.flapping or len(changes) >= FLAP_START):  # row 9: wait for it to settle
                return replace(state, since=now, value=value, changes=changes, held_open=True), [Event("hold", value)]
            return KeyState("ok", now, value, changes, False), [Event("resolve", value)]  # row 7
        return replace(state, value=value, changes=changes), [Event("update", value)]  # row 8
    if not cond:
        return KeyState("ok", state.since if state.status == "ok" else now, value, changes, False), []  # rows 1, 6
    if state.status == "ok" and rule.for_ > 0:
        return KeyState("pending", now, value, changes, False), []  # row 3
    if state.status == "pending" and now - state.since < rule.for_:
        return replace(state, value=value, changes=changes), []  # row 5
    changes = (*changes, now)  # rows 2 and 4
    return KeyState("firing", now, value, changes, False), [Event("fire", value)]


def _held(state: KeyState, clear: bool, value: float | None, changes: tuple[float, ...], now: float,
          flap: Flap) -> tuple[KeyState, list[Event]]:
    """Rows 10-12: an alert held open resolves once clear for `settle` seconds; failing again keeps it, flapping."""
    if clear:
        if now - state.since >= flap.settle:  # row 10: settled (a later failure is a new episode)
            return KeyState("ok", now, value, (), False), [Event("resolve", value)]
        return replace(state, value=value, changes=changes), []
    changes = (*changes, now)
    again = replace(state, since=now, value=value, changes=changes, held_open=False, flapping=True)
    if state.flapping:
        return again, [Event("update", value)]  # row 11
    return again, [Event("update", value), Event("flap_start", value)]  # row 12
