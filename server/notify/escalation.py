"""Escalation plans as plain data: one entry per matched route, stepping through its policy until acknowledged.

An entry is {"route", "escalation", "step", "loop", "next_at"}. Step i of a policy fires steps[i].after_minutes after
the previous notification (step 0: after the first one). After the last step the policy starts again, `loops` times in
all; then the entry is finished (next_at None). Acknowledging stops every entry; a snooze or silence pauses them and
re-arms the pending step when it ends.
"""

from __future__ import annotations

from typing import Any

from server.notify.config import NotifyConfig, Route, Step

Plan = list[dict[str, Any]]


def start_plan(routes: list[Route]) -> Plan:
    """A fresh plan for the routes that took an alert."""
    return [{"route": r.name, "escalation": r.escalation, "step": 0, "loop": 1, "next_at": None} for r in routes]


def arm(plan: Plan, config: NotifyConfig, now: float) -> None:
    """(Re)start the timer of each entry's pending step from now."""
    for entry in plan:
        policy = config.escalation(entry.get("escalation"))
        if policy is None or entry.get("finished"):
            entry["next_at"] = None
            continue
        step = min(int(entry.get("step", 0)), len(policy.steps) - 1)
        entry["next_at"] = now + policy.steps[step].after_minutes * 60


def take_due(plan: Plan, config: NotifyConfig, now: float) -> list[tuple[dict[str, Any], Step, int]]:
    """Steps due now (entry, step, 1-based step number), advancing each entry to its next step or loop."""
    due = []
    for entry in plan:
        next_at = entry.get("next_at")
        policy = config.escalation(entry.get("escalation"))
        if next_at is None or next_at > now or policy is None:
            continue
        index = min(int(entry.get("step", 0)), len(policy.steps) - 1)
        due.append((entry, policy.steps[index], index + 1))
        index += 1
        if index >= len(policy.steps):
            index = 0
            entry["loop"] = int(entry.get("loop", 1)) + 1
        entry["step"] = index
        if int(entry["loop"]) > policy.loops:
            entry["finished"] = True
            entry["next_at"] = None
        else:
            entry["next_at"] = now + policy.steps[index].after_minutes * 60
    return due


def next_due(plan: Plan) -> float | None:
    """The earliest pending step of the plan."""
    times = [float(e["next_at"]) for e in plan if e.get("next_at") is not None]
    return min(times) if times else None
