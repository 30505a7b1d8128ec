"""Runs the alert engine inside the writer's transaction: states, alerts, events and dependencies."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable

from server.alerts import engine
from server.alerts.engine import DEFAULT_FLAP, Event, Flap, KeyState, Observation, Status, applies, armed, candidates, step
from server.alerts.rules import DEFAULT_RULES, Rule
from server.alerts.titles import render_title
from server.config.settings import Settings
from server.store import alert_states
from server.store import alerts as alert_store
from server.store.alert_states import RuleDevice, StateKey, StateValues, StoredState
from server.store.db import Connection
from server.store.metrics import labels_key, labels_of
from server.store.status import CheckOutcome, DeviceStatus, StatusMap, Transition

log = logging.getLogger("pocketnoc.alerts")
OUTAGE_STATES = frozenset({"down", "unreachable"})
LABEL_CACHE_MAX = 200_000
HELD = "held"  # alert_states.status of a firing key held open by flapping


def flap_of(settings: Settings) -> Flap:
    """The flapping thresholds the settings give."""
    return Flap(settings.flap_window_seconds, settings.flap_settle_seconds)


class Alerting:
    """The rules in force and the writer hook that applies them."""

    def __init__(self, rules: Iterable[Rule] = DEFAULT_RULES, threshold: int = 2, flap: Flap = DEFAULT_FLAP) -> None:
        self.threshold = threshold
        self.flap = flap
        self._labels: dict[str, dict[str, str]] = {}  # parsed label sets (the same strings every poll)
        self.set_rules(rules)

    def set_rules(self, rules: Iterable[Rule]) -> None:
        """Replace the rules (on reload); states of removed rules stay until their devices are polled."""
        self.rules = [r for r in rules if r.enabled]
        names: set[str] = set()
        for rule in self.rules:
            names |= {c.name for c in rule.clauses} | {c.name for c in rule.clear_clauses or ()}
        self.needed = names - {"state"}

    def observation(self, device: RuleDevice, st: DeviceStatus) -> Observation:
        """A device's data for the rules: state, the metrics rules use, and check_up per check."""
        metrics: dict[str, dict[str, tuple[dict[str, str], float]]] = {}
        cache = self._labels
        if len(cache) > LABEL_CACHE_MAX:
            cache.clear()
        for rows in st.metrics.values():
            for metric, lbl, value in rows:
                if metric in self.needed and isinstance(value, int | float):  # null: a non-finite number, stored
                    labels = cache.get(lbl)
                    if labels is None:
                        labels = cache[lbl] = labels_of(lbl)
                    metrics.setdefault(metric, {})[lbl] = (labels, float(value))
        if "check_up" in self.needed:
            for name, check in st.checks.items():
                labels = {"check": name, "kind": str(check.get("kind"))}
                failing = not check.get("ok") and int(check.get("fails") or 0) >= self.threshold
                metrics.setdefault("check_up", {})[labels_key(labels)] = (labels, 0.0 if failing else 1.0)
        kind = device.kind or st.facts.get("kind")
        return Observation(device.id, device.name, st.state, kind, frozenset(device.tags or ()), metrics)

    def hook(
        self, conn: Connection, transitions: list[Transition], _outcomes: list[CheckOutcome], status: StatusMap
    ) -> None:
        """Evaluate the rules for the devices in this batch and record what changed."""
        now = max((o.ts for o in _outcomes), default=time.time())  # evaluate at observation time
        ids = list(status)
        if not ids:
            return
        info = alert_states.devices_by_id(conn, ids)
        prev = alert_states.load(conn, ids)
        graph = _Graph(conn) if transitions or any(r.status != "ok" for r in prev.values()) else None
        state_updates: list[tuple[int, StateValues]] = []
        new_states: list[tuple[StateKey, StateValues]] = []
        for device_id, st in status.items():
            device = info.get(device_id)
            if device is None:
                continue
            obs = self.observation(device, st)
            for rule in self.rules:
                if not applies(rule, obs):
                    continue
                quiet_when_new = rule.arm is None
                for key, (labels, values) in candidates(rule, obs).items():
                    row = prev.get((rule.name, device_id, key))
                    # Most keys of a fleet are quiet (ok, no recent changes) and stay so: when the condition does not
                    # hold, step() would return them unchanged and nothing would be written; say so without building
                    # their state (~50 keys a device every poll; the same outcome as the full path below).
                    if (quiet_when_new if row is None else row.status == "ok" and _no_changes(row.changes)) and (
                        engine.holds(rule.clauses, values) is not True
                    ):
                        continue
                    old = _key_state(row)
                    if not armed(rule, old, values):
                        continue
                    new, events = step(rule, old, values, now, self.flap)
                    if row is not None and new == old:
                        continue
                    if row is None and new.status == "ok" and not events and rule.arm is None:
                        continue  # nothing wrong and nothing to remember (an armed key is remembered)
                    alert_id = row.alert_id if row is not None else None
                    for event in events:
                        if graph is None:
                            graph = _Graph(conn)
                        alert_id = self._record(conn, rule, obs, labels, key, values, event, alert_id, now, graph)
                    if new.status == "ok" and not new.flapping:
                        alert_id = None
                    _save_state(row, rule.name, device_id, key, new, alert_id, state_updates, new_states)
        alert_states.update_many(conn, state_updates)
        alert_states.upsert_many(conn, new_states)
        if transitions:
            apply_dependencies(conn, graph or _Graph(conn), now)

    def _record(
        self,
        conn: Connection,
        rule: Rule,
        obs: Observation,
        labels: dict[str, str],
        key: str,
        values: dict[str, float | str],
        event: Event,
        alert_id: int | None,
        now: float,
        graph: _Graph,
    ) -> int | None:
        title_values: dict[str, object] = {
            **labels,
            "device": obs.name,
            "rule": rule.name,
            "state": obs.state,
            "value": event.value,
        }
        if event.kind == "fire":
            title = render_title(rule.title, title_values)
            blocker = graph.blocked_by(obs.device_id)
            text = title + (f" (hidden by the outage of device {blocker})" if blocker else "")
            new_id = alert_store.open_alert(conn, rule.name, obs.device_id, key, rule.severity, title, now, text,
                                            value=event.value, suppressed_by=blocker)
            log.info("alert %d fired: %s", new_id, title)  # device text in the title is escaped (logsafe)
            return new_id
        if alert_id is None:
            return None
        if event.kind == "resolve":
            alert_store.resolve_alert(conn, alert_id, now, "the condition cleared", value=event.value)
            return None
        if event.kind == "hold":
            alert_store.touch_alert(conn, alert_id, now, event.value)
            _event(conn, alert_id, now, "cleared", None, "the condition cleared; kept open until it has stayed clear")
            return alert_id
        if event.kind == "flap_start":
            alert_store.touch_alert(conn, alert_id, now, event.value, flapping=True)
            _event(conn, alert_id, now, "flapping", None, "failing again soon after it cleared: one alert until it settles")
            return alert_id
        alert_store.touch_alert(conn, alert_id, now, event.value)
        return alert_id


_STATUS: dict[str, Status] = {"ok": "ok", "pending": "pending", "firing": "firing", HELD: "firing"}


def _no_changes(changes: list[float] | str | None) -> bool:
    return not changes or changes == "[]"


def _key_state(row: StoredState | None) -> KeyState | None:
    if row is None:
        return None
    changes = row.changes if isinstance(row.changes, list) else json.loads(row.changes or "[]")
    held = row.status == HELD  # stored for a firing alert held open by flapping (its condition is clear)
    return KeyState(_STATUS.get(row.status, "ok"), row.since, row.value, tuple(changes), bool(row.flapping), held)


def _save_state(
    row: StoredState | None,
    rule: str,
    device_id: int,
    key: str,
    new: KeyState,
    alert_id: int | None,
    updates: list[tuple[int, StateValues]],
    inserts: list[tuple[StateKey, StateValues]],
) -> None:
    status = HELD if new.status == "firing" and new.held_open else new.status
    values = StateValues(status=status, since=new.since, value=new.value, alert_id=alert_id, changes=list(new.changes),
                         flapping=new.flapping)
    if row is None:
        inserts.append(((rule, device_id, key), values))
    else:
        updates.append((row.id, values))


def _event(conn: Connection, alert_id: int, ts: float, kind: str, user: str | None, text: str) -> None:
    alert_store.record_event(conn, alert_id, kind, user, text, ts)


class _Graph:
    """Parents and states of the devices in a dependency, to tell which outage hides which alerts."""

    def __init__(self, conn: Connection) -> None:
        rows = alert_states.device_graph(conn)
        self.parent: dict[int, int | None] = {}
        self.state: dict[int, str] = {}
        for device_id, parent_id, state in rows:
            self.parent[device_id] = parent_id
            self.state[device_id] = state

    def blocked_by(self, device_id: int) -> int | None:
        """The highest ancestor in an outage, if any (its alert is the one that speaks for all)."""
        found = None
        seen = {device_id}
        node = self.parent.get(device_id)
        while node is not None and node not in seen:
            seen.add(node)
            if self.state.get(node) in OUTAGE_STATES:
                found = node
            node = self.parent.get(node)
        return found


def apply_dependencies(conn: Connection, graph: _Graph, now: float) -> None:
    """Hide alerts behind an ancestor's outage, unhide them when it ends, and count what each outage hides."""
    open_alerts = alert_store.open_for_dependencies(conn)
    hidden: dict[int, int] = {}
    for alert in open_alerts:
        blocker = graph.blocked_by(alert.device_id)
        if blocker != alert.suppressed_by:
            alert_store.set_suppressed(conn, alert.id, blocker, now)
        if blocker is not None:
            hidden[blocker] = hidden.get(blocker, 0) + 1
    for alert in open_alerts:
        if alert.rule == "device-down" or alert.device_id in hidden:
            count = hidden.get(alert.device_id, 0)
            alert_store.set_hidden_count(conn, alert.id, count, now)
