"""Device state from its checks' latest outcomes: a pure function with its table written out.

Each check keeps: ok (last poll succeeded), answered (the target replied at all), fails
(consecutive failed polls). A failing check only counts as failing once fails >= threshold
(soft failures are ignored, so one lost UDP packet never pages anybody).

| checks counted as failing            | any check ok | state        |
|--------------------------------------|--------------|--------------|
| none, at least one check has polled  | yes          | up           |
| none, no check has polled yet        | -            | unknown      |
| some                                 | yes          | degraded     |
| all, at least one answered           | no           | down         |
| all, none answered                   | no           | unreachable  |
| (device disabled)                    | -            | unknown      |

A soft-failing check keeps the device in its previous state, except from "unknown", where
the first result is taken at once (there is no good state to protect).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

State = Literal["up", "degraded", "down", "unreachable", "unknown"]
STATES: tuple[State, ...] = ("down", "unreachable", "degraded", "unknown", "up")
SEVERITY_ORDER = {state: index for index, state in enumerate(STATES)}


@dataclass(frozen=True, slots=True)
class CheckStatus:
    """The latest outcome of one check."""

    ok: bool
    answered: bool
    fails: int
    error: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckStatus:
        """Read the JSON form kept in device_status.checks."""
        return cls(
            ok=bool(data.get("ok")),
            answered=bool(data.get("answered")),
            fails=int(data.get("fails") or 0),
            error=data.get("error"),
        )


def decide_state(checks: Mapping[str, CheckStatus], previous: State, threshold: int, enabled: bool = True) -> tuple[State, str]:
    """The device's state and a one-line reason (see the table in this module's docstring)."""
    if not enabled:
        return "unknown", "polling disabled"
    if not checks:
        return "unknown", "not polled yet"
    hard = {name: c for name, c in checks.items() if not c.ok and (c.fails >= threshold or previous == "unknown")}
    soft = [name for name, c in checks.items() if not c.ok and name not in hard]
    ok = any(c.ok for c in checks.values())
    if not hard:
        if soft and previous != "unknown":
            return previous, f"{', '.join(sorted(soft))} failed once; waiting for confirmation"
        return "up", "all checks ok"
    reasons = "; ".join(f"{name}: {c.error or 'failed'}" for name, c in sorted(hard.items()))
    if ok or soft:
        return "degraded", reasons
    if any(c.answered for c in hard.values()):
        return "down", reasons
    return "unreachable", reasons
