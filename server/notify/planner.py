"""Turns outbox rows into messages and moves escalations along, in one transaction per pass.

Outbox kinds: fired starts a track (held until the alert may notify), resolved (and flapping) tell everyone who was notified,
acknowledged stops escalation, snoozed pauses it until the snooze ends, unacknowledged / unsnoozed / unsuppressed
make the track due again. A due track sends the first notification (route targets), a reminder after a pause, or
the next escalation step. Suppressed, silenced and snoozed alerts wait; they are checked again at send time too.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import cached_property
from typing import Any

from server.notify import escalation
from server.notify.config import NotifyConfig
from server.notify.dependencies import Dependencies
from server.notify.routing import Directory, Target, matching_routes
from server.notify.summaries import Grouper
from server.store import notify as store
from server.store.db import Connection
from server.store.notify_records import NotifyAlert, Track

log = logging.getLogger("pocketnoc.notify")
BATCH = 500


class Pass:
    """What one planning pass needs, loaded on first use."""

    def __init__(self, conn: Connection, config: NotifyConfig, now: float) -> None:
        self.conn = conn
        self.config = config
        self.now = now

    @cached_property
    def grouper(self) -> Grouper:
        """Creates this pass's messages, grouped per target once a target has had its burst."""
        return Grouper(self.conn, self.config.delivery, self.now)

    @cached_property
    def deps(self) -> Dependencies:
        """Which alerts are behind an outage of a device they depend on."""
        return Dependencies(self.conn, self.config.delivery, self.now)

    @cached_property
    def directory(self) -> Directory:
        """Recipients and channels."""
        return Directory(self.conn)

    @cached_property
    def holds(self) -> store.Holds:
        """Silences and the rest of the may-it-notify test."""
        return store.Holds(self.conn, self.now)

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

    def move(to: str, next_at: float | None) -> None:
        store.move_track(ctx.conn, alert.id, to, next_at, ctx.now)
        known[alert.id] = to

    if kind == "fired":
        routes = matching_routes(ctx.config, alert, ctx.now)
        if routes:
            track = Track(alert.id, alert.episode, "held", False, escalation.start_plan(routes), ctx.now, ctx.now)
            store.put_track(ctx.conn, track, status is not None)
            known[alert.id] = track.status
        return
    if status is None or status == "done":
        return
    if kind == "resolved":
        if not store.notified_targets(ctx.conn, alert.id, alert.episode):
            move("done", None)
            return
        folded, wait = ctx.deps.folded(alert)
        if wait is not None:  # dependents get one poll to recover; the resolve then says which did
            move("closing", wait)
            return
        move("done", None)
        _resolve(ctx, alert, folded.extra())
    elif kind == "flapping":  # once per episode, to those told about it (a trigger not yet sent says it itself)
        if status == "acked":  # someone is on it: the flap is on the alert page, not another buzz
            return
        for row in store.notified_targets(ctx.conn, alert.id, alert.episode):
            ctx.grouper.emit("flapping", Target(row.target_type, int(row.target_id), row.user_id), alert)
    elif kind == "acknowledged":
        move("acked", None)
    elif kind == "snoozed":
        until = float(alert.snoozed_until) if alert.snoozed_until else ctx.now
        move("held", max(until, ctx.now))
    elif kind == "unsuppressed":  # the parent is back: one poll's grace before anything about this device is sent
        move("held", ctx.now + ctx.deps.grace(alert.device_id))
    elif kind in ("unacknowledged", "unsnoozed"):
        move("held", ctx.now)


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
            store.move_track(ctx.conn, alert.id, track.status, wait, now)
            return
        store.move_track(ctx.conn, alert.id, "done", None, now)
        _resolve(ctx, alert, folded.extra())
        return
    if alert is None or alert.status != "firing":
        store.move_track(ctx.conn, track.alert_id, "done", None, now)
        return
    if alert.acked_at:
        store.move_track(ctx.conn, alert.id, "acked", None, now)
        return
    plan_ = [dict(e) for e in (track.plan or [])]
    reason = ctx.holds.reason(alert)
    if reason is not None:
        wait = float(alert.snoozed_until or now) if reason == "snoozed" else now + ctx.config.delivery.recheck_seconds
        store.move_track(ctx.conn, alert.id, "held", max(wait, now + 0.001), now)
        return
    if not track.notified:
        wait = ctx.deps.trigger_wait(alert)
        if wait is not None:  # parents' state (or the dependents an outage hides) not known yet: hold off
            store.move_track(ctx.conn, alert.id, "held", max(wait, now + 0.001), now)
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
    moved = replace(track, status="active", notified=True, plan=plan_, next_at=escalation.next_due(plan_), updated_at=now)
    store.put_track(ctx.conn, moved, True)
