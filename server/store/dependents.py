"""What dependency-aware notification needs to read: the device tree with states and timings, and alerts behind a device."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from server.store.schema import alerts, device_status, devices, notify_messages

DEFAULT_TIMEOUT = 5.0  # seconds: a check's timeout when the device names none (inventory.CHECK_TIMEOUT)
OUTAGE = frozenset({"down", "unreachable"})


@dataclass(frozen=True, slots=True)
class Node:
    """One device as the dependency rules see it."""

    id: int
    name: str
    parent_id: int | None
    interval: float
    timeout: float
    state: str
    last_polled: float
    failing: bool  # some check failed its last poll (a soft failure counts: the device may be going down)
    enabled: bool

    @property
    def poll_seconds(self) -> float:
        """One poll of this device: its interval plus its timeout."""
        return self.interval + self.timeout


@dataclass(frozen=True, slots=True)
class Dependent:
    """An alert on a device behind another one."""

    alert_id: int
    device: str
    status: str
    notified: bool


def _timeout(spec: dict[str, Any]) -> float:
    """The longest timeout configured on a device (its slowest check decides when a poll has surely ended)."""
    found: list[float] = []
    for proto in ("snmp", "ssh"):
        part = spec.get(proto)
        if isinstance(part, dict) and isinstance(part.get("timeout"), int | float):
            retries = part.get("retries") if proto == "snmp" else 0
            found.append(float(part["timeout"]) * (1 + int(retries or 0)))
    for check in spec.get("checks") or []:
        if isinstance(check, dict) and isinstance(check.get("timeout"), int | float):
            found.append(float(check["timeout"]))
    return max(found, default=DEFAULT_TIMEOUT)


class Tree:
    """The devices' parent links, states and timings, read once per planning pass."""

    def __init__(self, conn: Connection) -> None:
        rows = conn.execute(
            select(devices.c.id, devices.c.name, devices.c.parent_id, devices.c.interval, devices.c.spec,
                   devices.c.enabled, device_status.c.state, device_status.c.checks, device_status.c.last_polled)
            .outerjoin(device_status, device_status.c.device_id == devices.c.id)
        )
        self.nodes: dict[int, Node] = {}
        self.children: dict[int, list[int]] = {}
        for r in rows:
            checks = r.checks if isinstance(r.checks, dict) else {}
            failing = any(isinstance(c, dict) and not c.get("ok") for c in checks.values())
            self.nodes[r.id] = Node(r.id, r.name, r.parent_id, float(r.interval), _timeout(dict(r.spec or {})),
                                    str(r.state or "unknown"), float(r.last_polled or 0.0), failing, bool(r.enabled))
            if r.parent_id is not None:
                self.children.setdefault(r.parent_id, []).append(r.id)

    def ancestors(self, device_id: int) -> list[Node]:
        """Parent, grandparent, … (a loop in the data stops the walk)."""
        out: list[Node] = []
        seen = {device_id}
        node = self.nodes.get(device_id)
        while node is not None and node.parent_id is not None and node.parent_id not in seen:
            seen.add(node.parent_id)
            parent = self.nodes.get(node.parent_id)
            if parent is None:
                break
            out.append(parent)
            node = parent
        return out

    def descendants(self, device_id: int) -> list[Node]:
        """Every device behind this one."""
        out: list[Node] = []
        seen = {device_id}
        todo = list(self.children.get(device_id, []))
        while todo:
            child = todo.pop()
            if child in seen:
                continue
            seen.add(child)
            out.append(self.nodes[child])
            todo.extend(self.children.get(child, []))
        return out


def hidden_by(conn: Connection, device_id: int) -> list[str]:
    """Names of the devices whose open alerts this device's outage hides, by name."""
    rows = conn.execute(
        select(devices.c.name).distinct()
        .join(alerts, alerts.c.device_id == devices.c.id)
        .where(alerts.c.status == "firing", alerts.c.suppressed_by == device_id)
        .order_by(devices.c.name)
    )
    return [str(r.name) for r in rows]


def behind(conn: Connection, device_ids: Iterable[int], since: float, until: float) -> list[Dependent]:
    """Alerts on these devices open at some time in [since, until] (the parent's outage), with whether anyone was told."""
    wanted = sorted(set(device_ids))
    if not wanted:
        return []
    rows = conn.execute(
        select(alerts.c.id, alerts.c.status, devices.c.name)
        .join(devices, devices.c.id == alerts.c.device_id)
        .where(alerts.c.device_id.in_(wanted), alerts.c.started_at <= until,
               (alerts.c.status == "firing") | (alerts.c.resolved_at >= since))
        .order_by(devices.c.name, alerts.c.id)
    )
    found = list(rows)
    notified = notified_alerts(conn, [int(r.id) for r in found])
    return [Dependent(int(r.id), str(r.name), str(r.status), int(r.id) in notified) for r in found]


def notified_alerts(conn: Connection, alert_ids: Iterable[int]) -> set[int]:
    """Which of these alerts had a firing message made (sent, waiting or in a summary)."""
    wanted = sorted(set(alert_ids))
    if not wanted:
        return set()
    m = notify_messages
    rows = conn.execute(
        select(m.c.alert_id).distinct().where(
            m.c.alert_id.in_(wanted), m.c.kind.in_(("trigger", "escalate", "reminder")),
            m.c.status.in_(("pending", "sent", "grouped", "summarized")))
    )
    return {int(r.alert_id) for r in rows}


def behind_outages(conn: Connection) -> dict[int, str]:
    """Devices in an outage behind an ancestor in an outage -> that (highest) ancestor's name: unreachable because of it.

    Reads the devices in an outage and the parent links of devices that are someone's parent, not the whole
    inventory (the overview asks on every render while anything is down)."""
    rows = conn.execute(
        select(devices.c.id, devices.c.name, devices.c.parent_id)
        .join(device_status, device_status.c.device_id == devices.c.id)
        .where(device_status.c.state.in_(sorted(OUTAGE)))
    )
    names: dict[int, str] = {}
    parent: dict[int, int | None] = {}
    for r in rows:
        names[r.id], parent[r.id] = str(r.name), r.parent_id
    if all(p is None for p in parent.values()):
        return {}
    parents = select(devices.c.parent_id).where(devices.c.parent_id.is_not(None))
    for link in conn.execute(select(devices.c.id, devices.c.parent_id).where(devices.c.id.in_(parents))):
        parent.setdefault(link.id, link.parent_id)
    down = set(names)
    out: dict[int, str] = {}
    for device_id in down:
        seen, node, found = {device_id}, parent.get(device_id), None
        while node is not None and node not in seen:
            seen.add(node)
            if node in down:
                found = node
            node = parent.get(node)
        if found is not None:
            out[device_id] = names[found]
    return out
