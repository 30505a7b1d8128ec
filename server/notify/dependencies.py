"""Dependencies decided before anything is sent: hold-off for children, one message per parent outage, folded recovery.

- A new alert on a device behind a parent waits until every ancestor has been polled since the alert started and is
  healthy, or until the hold-off ends (default: the slowest ancestor's interval plus its timeout). If a parent goes
  down meanwhile, the alert is hidden by it and never sent on its own.
- A parent in an outage waits (at most the hold-off of its children) while a device behind it has a failing check
  but is not down yet, so its one message can name everything its outage hides.
- When a parent recovers, its dependents get one poll (their interval plus timeout) before anything about them is
  sent, and the parent's resolve waits as long for them, to say which recovered with it and which are still down.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from server.notify.passes import PassPart
from server.store.dependents import OUTAGE, Node, Tree, behind, hidden_by

RECHECK = 1.0  # seconds between looks while waiting for dependents to settle
NAMED = 10  # dependents named in one message; the rest are counted (the link lists them all)


@dataclass(frozen=True, slots=True)
class Folded:
    """What a parent's resolve says about the devices behind it."""

    recovered: list[str]
    still_down: list[str]

    def extra(self) -> dict[str, Any]:
        """The payload fields of a resolve message."""
        if not self.recovered and not self.still_down:
            return {}
        return {"recovered": self.recovered[:NAMED], "recovered_count": len(self.recovered),
                "still_down": self.still_down[:NAMED], "still_down_count": len(self.still_down)}


class Dependencies(PassPart):
    """The dependency rules for one planning pass (the device tree is read on first use)."""

    @cached_property
    def tree(self) -> Tree:
        """Parents, states and timings of all devices."""
        return Tree(self.conn)

    def _holdoff(self, nodes: list[Node]) -> float:
        configured = self.delivery.dependency_holdoff_seconds
        if configured is not None:
            return configured
        return max((n.poll_seconds for n in nodes), default=0.0)

    def trigger_wait(self, alert: Any) -> float | None:
        """Until when the first message about this alert waits for its parents or its dependents (None: send now)."""
        started = float(alert.started_at)
        ancestors = [a for a in self.tree.ancestors(alert.device_id) if a.enabled]
        unconfirmed = [a for a in ancestors if a.state in OUTAGE or a.failing or a.last_polled < started]
        if unconfirmed:
            until = started + self._holdoff(unconfirmed)
            if self.now < until:
                return min(until, self.now + RECHECK)
        node = self.tree.nodes.get(alert.device_id)
        if node is None or node.state not in OUTAGE:
            return None
        settling = [d for d in self.tree.descendants(alert.device_id) if d.enabled and d.failing and d.state not in OUTAGE]
        if settling:
            until = started + self._holdoff(settling)
            if self.now < until:
                return min(until, self.now + RECHECK)
        return None

    def grace(self, device_id: int) -> float:
        """One poll of this device: how long an alert uncovered by its parent's recovery waits before it is sent."""
        node = self.tree.nodes.get(device_id)
        return self._holdoff([node] if node is not None else [])

    def hidden(self, alert: Any) -> dict[str, Any]:
        """Payload fields naming the devices this alert's outage hides (empty when it hides none)."""
        if not self.tree.children.get(alert.device_id):
            return {}
        names = hidden_by(self.conn, alert.device_id)
        return {"dependents": names[:NAMED], "dependents_count": len(names)} if names else {}

    def folded(self, alert: Any) -> tuple[Folded, float | None]:
        """What the resolve of a parent's alert says about its dependents, and until when it waits (None: send now)."""
        behind_it = self.tree.descendants(alert.device_id)
        if not behind_it:
            return Folded([], []), None
        resolved_at = float(alert.resolved_at or self.now)
        found = [d for d in behind(self.conn, [n.id for n in behind_it], float(alert.started_at), resolved_at)
                 if not d.notified]
        down = sorted({d.device for d in found if d.status == "firing"})
        up = sorted({d.device for d in found if d.status != "firing"} - set(down))
        if down:
            until = resolved_at + self._holdoff(behind_it)
            if self.now < until:
                return Folded(up, down), min(until, self.now + RECHECK)
        return Folded(up, down), None
