"""Runs the alert engine inside the writer's transaction: states, alerts, events and dependencies."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from server.alerts.engine import DEFAULT_FLAP, Event, Flap, KeyState, Observation, applies, armed, candidates, step
from server.alerts.rules import DEFAULT_RULES, Rule
from server.alerts.titles import render_title
from server.config.settings import Settings
from server.store.alerts import record_event
from server.store.metrics import labels_key, labels_of
from server.store.schema import alert_states, alerts, devices
from server.store.status import CheckOutcome, Transition

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

    def observation(self, device: Any, st: dict[str, Any]) -> Observation:
        """A device's data for the rules: state, the metrics rules use, and check_up per check."""
        metrics: dict[str, dict[str, tuple[dict[str, str], float]]] = {}
        cache = self._labels
        if len(cache) > LABEL_CACHE_MAX:
            cache.clear()
        for rows in (st.get("metrics") or {}).values():
            for metric, lbl, value in rows:
                if metric in self.needed:
                    labels = cache.get(lbl)
                    if labels is None:
                        labels = cache[lbl] = labels_of(lbl)
                    metrics.setdefault(metric, {})[lbl] = (labels, float(value))
        if "check_up" in self.needed:
            for name, check in (st.get("checks") or {}).items():
                labels = {"check": name, "kind": str(check.get("kind"))}
                failing = not check.get("ok") and int(check.get("fails") or 0) >= self.threshold
                metrics.setdefault("check_up", {})[labels_key(labels)] = (labels, 0.0 if failing else 1.0)
        kind = device.kind or (st.get("facts") or {}).get("kind")
        return Observation(device.id, device.name, st["state"], kind, frozenset(device.tags or ()), metrics)

    def hook(
        self, conn: Connection, transitions: list[Transition], _outcomes: list[CheckOutcome], status: dict[int, dict[str, Any]]
    ) -> None:
        """Evaluate the rules for the devices in this batch and record what changed."""
        now = max((o.ts for o in _outcomes), default=time.time())  # evaluate at observation time
        ids = list(status)
        if not ids:
            return
        info = {
            d.id: d
            for d in conn.execute(
                select(devices.c.id, devices.c.name, devices.c.kind, devices.c.tags).where(devices.c.id.in_(ids))
            )
        }
        prev: dict[tuple[str, int, str], Any] = {
            (r.rule, r.device_id, r.labels): r
            for r in conn.execute(select(alert_states).where(alert_states.c.device_id.in_(ids)))
        }
        graph = _Graph(conn) if transitions or any(r.status != "ok" for r in prev.values()) else None
        state_updates: list[dict[str, Any]] = []
        for device_id, st in status.items():
            device = info.get(device_id)
            if device is None:
                continue
            obs = self.observation(device, st)
            for rule in self.rules:
                if not applies(rule, obs):
                    continue
                for key, (labels, values) in candidates(rule, obs).items():
                    row = prev.get((rule.name, device_id, key))
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
                    _save_state(conn, row, rule.name, device_id, key, new, alert_id, state_updates)
        if state_updates:
            conn.execute(
                update(alert_states)
                .where(alert_states.c.id == bindparam("b_id"))
                .values(
                    status=bindparam("v_status"),
                    since=bindparam("v_since"),
                    value=bindparam("v_value"),
                    alert_id=bindparam("v_alert"),
                    changes=bindparam("v_changes"),
                    flapping=bindparam("v_flapping"),
                ),
                state_updates,
            )
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
            episode = 1 + int(
                conn.execute(
                    select(alerts.c.episode)
                    .where(alerts.c.rule == rule.name, alerts.c.device_id == obs.device_id, alerts.c.labels == key)
                    .order_by(alerts.c.id.desc())
                    .limit(1)
                ).scalar()
                or 0
            )
            blocker = graph.blocked_by(obs.device_id)
            new_id = int(
                conn.execute(
                    insert(alerts).values(
                        rule=rule.name,
                        device_id=obs.device_id,
                        labels=key,
                        severity=rule.severity,
                        title=title,
                        status="firing",
                        started_at=now,
                        last_value=event.value,
                        episode=episode,
                        suppressed_by=blocker,
                        flapping=False,
                        hidden=0,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            _event(conn, new_id, now, "fired", None, title + (f" (hidden by the outage of device {blocker})" if blocker else ""))
            log.info("alert %d fired: %s", new_id, title)  # device text in the title is escaped (logsafe)
            return new_id
        if alert_id is None:
            return None
        if event.kind == "resolve":
            conn.execute(
                update(alerts)
                .where(alerts.c.id == alert_id)
                .values(status="resolved", resolved_at=now, updated_at=now, last_value=event.value)
            )
            _event(conn, alert_id, now, "resolved", None, "the condition cleared")
            return None
        if event.kind == "hold":
            conn.execute(update(alerts).where(alerts.c.id == alert_id).values(last_value=event.value, updated_at=now))
            _event(conn, alert_id, now, "cleared", None, "the condition cleared; kept open until it has stayed clear")
            return alert_id
        if event.kind == "flap_start":
            conn.execute(
                update(alerts).where(alerts.c.id == alert_id).values(flapping=True, updated_at=now, last_value=event.value)
            )
            _event(conn, alert_id, now, "flapping", None, "failing again soon after it cleared: one alert until it settles")
            return alert_id
        conn.execute(update(alerts).where(alerts.c.id == alert_id).values(last_value=event.value, updated_at=now))
        return alert_id


def _key_state(row: Any) -> KeyState | None:
    if row is None:
        return None
    changes = row.changes if isinstance(row.changes, list) else json.loads(row.changes or "[]")
    held = row.status == HELD  # stored for a firing alert held open by flapping (its condition is clear)
    return KeyState("firing" if held else row.status, row.since, row.value, tuple(changes), bool(row.flapping), held)


def _save_state(
    conn: Connection,
    row: Any,
    rule: str,
    device_id: int,
    key: str,
    new: KeyState,
    alert_id: int | None,
    updates: list[dict[str, Any]],
) -> None:
    values = {
        "status": HELD if new.status == "firing" and new.held_open else new.status,
        "since": new.since,
        "value": new.value,
        "alert_id": alert_id,
        "changes": list(new.changes),
        "flapping": new.flapping,
    }
    if row is None:
        conn.execute(_upsert_state(conn, {"rule": rule, "device_id": device_id, "labels": key, **values}))
    else:
        updates.append({"b_id": row.id, **{f"v_{k}": v for k, v in values.items() if k != "alert_id"}, "v_alert": alert_id})


def _upsert_state(conn: Connection, values: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT on the state's unique key, so two writers can never fail on the same new key."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(alert_states).values(**values)
    changed = {k: stmt.excluded[k] for k in values if k not in ("rule", "device_id", "labels")}
    return stmt.on_conflict_do_update(index_elements=["rule", "device_id", "labels"], set_=changed)


def _event(conn: Connection, alert_id: int, ts: float, kind: str, user: str | None, text: str) -> None:
    record_event(conn, alert_id, kind, user, text, ts)


class _Graph:
    """Parents and states of all devices, to tell which outage hides which alerts."""

    def __init__(self, conn: Connection) -> None:
        from server.store.schema import device_status

        rows = conn.execute(
            select(devices.c.id, devices.c.parent_id, device_status.c.state).join(
                device_status, device_status.c.device_id == devices.c.id
            )
        )
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
    open_alerts = list(
        conn.execute(
            select(alerts.c.id, alerts.c.device_id, alerts.c.rule, alerts.c.suppressed_by)
            .where(alerts.c.status == "firing")
            .order_by(alerts.c.id)  # one order for every writer: concurrent updates queue instead of deadlocking
        )
    )
    hidden: dict[int, int] = {}
    for alert in open_alerts:
        blocker = graph.blocked_by(alert.device_id)
        if blocker != alert.suppressed_by:
            conn.execute(update(alerts).where(alerts.c.id == alert.id).values(suppressed_by=blocker, updated_at=now))
            text = f"hidden by the outage of device {blocker}" if blocker else "no longer hidden: the upstream outage ended"
            _event(conn, alert.id, now, "suppressed" if blocker else "unsuppressed", None, text)
        if blocker is not None:
            hidden[blocker] = hidden.get(blocker, 0) + 1
    for alert in open_alerts:
        if alert.rule == "device-down" or alert.device_id in hidden:
            count = hidden.get(alert.device_id, 0)
            conn.execute(
                update(alerts).where(alerts.c.id == alert.id, alerts.c.hidden != count).values(hidden=count, updated_at=now)
            )
