"""Turns outbox rows into messages and moves escalations along, in one transaction per pass.

Outbox kinds: fired starts a track (held until the alert may notify), resolved (and flapping) tell everyone who was notified,
acknowledged stops escalation, snoozed pauses it until the snooze ends, unacknowledged / unsnoozed / unsuppressed
make the track due again. A due track sends the first notification (route targets), a reminder after a pause, or
the next escalation step. Suppressed, silenced and snoozed alerts wait; they are checked again at send time too.
"""

from __future__ import annotations

import logging
from typing import Any

from server.notify import escalation
from server.notify.config import NotifyConfig
from server.notify.dependencies import Dependencies
from server.notify.routing import Directory, Target, matching_routes
from server.notify.summaries import Grouper
from server.store import notify as store
from server.store.db import Connection
from server.store.notify_records import NotifyAlert, Track, TrackValues

log = logging.getLogger("pocketnoc.notify")
BATCH = 500


class Pass:
    """What one planning pass needs, loaded on first use."""

    def __init__(self, conn: Connection, config: NotifyConfig, now: float) -> None:
        self.conn = conn
        self.config = config
        self.now = now
        self.grouper = Grouper(conn, config.delivery, now)
        self.deps = Dependencies(conn, config.delivery, now)
        self._directory: Directory | None = None
        self._holds: store.Holds | None = None

    @property
    def directory(self) -> Directory:
        """Recipients and channels."""
        if self._directory is None:
            self._directory = Directory(self.conn)
        return self._directory

    @property
    def holds(self) -> store.Holds:
        """Silences and the rest of the may-it-notify test."""
        if self._holds is None:
            self._holds = store.Holds(self.conn, self.now)
        return self._holds

    def route_targets(self, plan: escalation.Plan) -> list[Target]:
        """Everyone the plan's routes reach, each once."""
        seen: dict[tuple[str, int], Target] = {}
        routes = {r.name: r for r in self.config.effective_routes()}
        for entry in plan:
            route = routes.get(str(entry.get("route")))
            if route is not None:
                for target in self.directory.reach(route.users, route.channels):
                    seen.setdefault(target.key, target)
        return list(seen.values())


def plan(conn: Connection, config: NotifyConfig, now: float) -> int:
    """One pass: outbox rows, then due tracks; returns how many messages were created."""
    store.serialise(conn)
    ctx = Pass(conn, config, now)
    events = store.pending_events(conn, BATCH)
    if events:
        alerts = store.alerts_by_id(conn, [e.alert_id for e in events])
        known = {a: t.status for a, t in store.tracks_by_alert(conn, alerts).items()}
        for event in events:
            alert = alerts.get(event.alert_id)
            if alert is not None:
                _event(ctx, event.kind, alert, known)
        store.finish_events(conn, [e.id for e in events], now)
    tracks = store.due_tracks(conn, now, BATCH)
    if tracks:
        alerts = store.alerts_by_id(conn, [t.alert_id for t in tracks])
        for track in tracks:
            _track(ctx, track, alerts.get(track.alert_id))
    ctx.grouper.flush()
    return ctx.grouper.created


def _event(ctx: Pass, kind: str, alert: NotifyAlert, known: dict[int, str]) -> None:
    """Apply one outbox row; `known` holds the status of every track seen in this pass."""
    status = known.get(alert.id)

    def put(values: TrackValues) -> None:
        store.put_track(ctx.conn, alert.id, {**values, "updated_at": ctx.now}, status is not None)
        known[alert.id] = str(values.get("status", status))

    if kind == "fired":
        routes = matching_routes(ctx.config, alert, ctx.now)
        if routes:
            put({"episode": alert.episode, "status": "held", "notified": False, "plan": escalation.start_plan(routes),
                 "next_at": ctx.now})
        return
    if status is None or status == "done":
        return
    if kind == "resolved":
        if not store.notified_targets(ctx.conn, alert.id, alert.episode):
            put({"status": "done", "next_at": None})
            return
        folded, wait = ctx.deps.folded(alert)
        if wait is not None:  # dependents get one poll to recover; the resolve then says which did
            put({"status": "closing", "next_at": wait})
            return
        put({"status": "done", "next_at": None})
        _resolve(ctx, alert, folded.extra())
    elif kind == "flapping":  # once per episode, to those told about it (a trigger not yet sent says it itself)
        if status == "acked":  # someone is on it: the flap is on the alert page, not another buzz
            return
        for row in store.notified_targets(ctx.conn, alert.id, alert.episode):
            ctx.grouper.emit("flapping", Target(row.target_type, int(row.target_id), row.user_id), alert)
    elif kind == "acknowledged":
        put({"status": "acked", "next_at": None})
    elif kind == "snoozed":
        until = float(alert.snoozed_until) if alert.snoozed_until else ctx.now
        put({"status": "held", "next_at": max(until, ctx.now)})
    elif kind == "unsuppressed":  # the parent is back: one poll's grace before anything about this device is sent
        put({"status": "held", "next_at": ctx.now + ctx.deps.grace(alert.device_id)})
    elif kind in ("unacknowledged", "unsnoozed"):
        put({"status": "held", "next_at": ctx.now})


def _resolve(ctx: Pass, alert: NotifyAlert, extra: dict[str, Any]) -> None:
    """Tell everyone who was told about the alert that it resolved ("stable again" at the end of a flapping episode)."""
    if alert.flapping:
        extra = {**extra, "flapping": True}
    for row in store.notified_targets(ctx.conn, alert.id, alert.episode):
        ctx.grouper.emit("resolve", Target(row.target_type, int(row.target_id), row.user_id), alert, extra or None)


def _track(ctx: Pass, track: Track, alert: NotifyAlert | None) -> None:
    now = ctx.now
    if track.status == "closing" and alert is not None and alert.status == "resolved":
        folded, wait = ctx.deps.folded(alert)
        if wait is not None:
            store.put_track(ctx.conn, alert.id, {"next_at": wait, "updated_at": now}, True)
            return
        store.put_track(ctx.conn, alert.id, {"status": "done", "next_at": None, "updated_at": now}, True)
        _resolve(ctx, alert, folded.extra())
        return
    if alert is None or alert.status != "firing":
        store.put_track(ctx.conn, track.alert_id, {"status": "done", "next_at": None, "updated_at": now}, True)
        return
    if alert.acked_at:
        store.put_track(ctx.conn, alert.id, {"status": "acked", "next_at": None, "updated_at": now}, True)
        return
    plan_ = [dict(e) for e in (track.plan or [])]
    reason = ctx.holds.reason(alert)
    if reason is not None:
        wait = float(alert.snoozed_until or now) if reason == "snoozed" else now + ctx.config.delivery.recheck_seconds
        store.put_track(ctx.conn, alert.id, {"status": "held", "next_at": max(wait, now + 0.001), "updated_at": now}, True)
        return
    if not track.notified:
        wait = ctx.deps.trigger_wait(alert)
        if wait is not None:  # parents' state (or the dependents an outage hides) not known yet: hold off
            store.put_track(ctx.conn, alert.id, {"status": "held", "next_at": max(wait, now + 0.001), "updated_at": now}, True)
            return
    if not track.notified or track.status == "held":
        kind = "trigger" if not track.notified else "reminder"
        hidden = ctx.deps.hidden(alert)
        for target in ctx.route_targets(plan_):
            ctx.grouper.emit(kind, target, alert, hidden or None)
        escalation.arm(plan_, ctx.config, now)
    else:
        for _entry, step, number in escalation.take_due(plan_, ctx.config, now):
            for target in ctx.directory.reach(step.users, step.channels):
                ctx.grouper.emit("escalate", target, alert, {"step": number})
    values: TrackValues = {"status": "active", "notified": True, "plan": plan_, "next_at": escalation.next_due(plan_),
                           "updated_at": now}
    store.put_track(ctx.conn, alert.id, values, True)
