"""What the notification API and pages do (both call these): channels, devices, tests, push actions, views."""

from __future__ import annotations

import time
from typing import TypedDict

from server.notify import deadman, notices
from server.notify.channels import ChannelError, build
from server.notify.routing import Target
from server.notify.runtime import Notify
from server.notify.webpush import PushError, check_subscription
from server.runtime import Services
from server.services.alerts import act
from server.services.errors import ServiceError
from server.store import accounts, notify_views
from server.store import notify as store
from server.store import notify_targets as targets
from server.store.accounts import User
from server.store.db import Connection
from server.store.jsontypes import JsonObject
from server.store.notify_records import MessageView
from server.store.notify_targets import ChannelValues, SubscriptionView

SNOOZE_FROM_PUSH_MINUTES = 60


class WorkerStatus(TypedDict):
    """The notification worker's counters."""

    running: bool
    sent: int
    failed: int
    last_loop: float


class NotifyStatus(TypedDict):
    """Health of notifications, as the status API and page show it."""

    monitoring: deadman.MonitoringStatus
    messages: dict[str, int]
    outbox_backlog: int
    broken_channels: list[str]
    worker: WorkerStatus | None
    problems: list[str]


class OpError(ServiceError):
    """A request that cannot be done: status code and message (a domain error like every service's)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, status)


def create_channel(svc: Services, notify: Notify, user: User, ip: str, name: str, url: str, owner: str | None,
                   allow_unsafe: bool, enabled: bool = True) -> JsonObject:
    """Validate (policy included) and store a channel; the URL is sealed and never shown again."""
    try:
        channel = build(url, allow_unsafe)
    except ChannelError as exc:
        raise OpError(422, str(exc)) from None
    now = time.time()
    with svc.engine.begin() as conn:
        owner_id = None
        if owner:
            owner_id = targets.user_ids(conn).get(owner)
            if owner_id is None:
                raise OpError(422, f"no user named {owner!r}")
        values: ChannelValues = {"name": name, "kind": channel.kind, "url": url, "display": channel.display(),
                                 "user_id": owner_id, "enabled": enabled, "allow_unsafe": allow_unsafe, "source": "api"}
        try:
            channel_id = targets.save_channel(conn, svc.box, values, now)
        except targets.TargetError as exc:
            raise OpError(409, str(exc)) from None
        accounts.write_audit(conn, user, "channel.create", name,
                             {"kind": channel.kind, "url": channel.display(), "user": owner, "allow_unsafe": allow_unsafe}, ip)
        row = targets.channel_rows(conn, [channel_id])[0]
    return targets.channel_view(row, owner)


def delete_channel(svc: Services, user: User, ip: str, channel_id: int) -> None:
    """Remove a channel made through the API (file channels are changed in the file)."""
    with svc.engine.begin() as conn:
        rows = targets.channel_rows(conn, [channel_id])
        if not rows:
            raise OpError(404, "no such channel")
        if rows[0].source == "config":
            raise OpError(409, "this channel comes from the notifications file; change it there")
        targets.delete_channel(conn, channel_id)
        store.drop_target_messages(conn, "channel", channel_id, time.time())
        accounts.write_audit(conn, user, "channel.delete", rows[0].name, {}, ip)


def test_channel(svc: Services, notify: Notify, user: User, ip: str, channel_id: int) -> int:
    """Queue a test message on a channel."""
    with svc.engine.begin() as conn:
        rows = targets.channel_rows(conn, [channel_id])
        if not rows:
            raise OpError(404, "no such channel")
        message_id = notices.test_message(conn, Target("channel", channel_id, rows[0].user_id), user.name, time.time())
        accounts.write_audit(conn, user, "channel.test", rows[0].name, {"message": message_id}, ip)
    notify.kick()
    return message_id


def subscribe(svc: Services, user: User, ip: str, endpoint: str, p256dh: str, auth: str, label: str) -> SubscriptionView:
    """Store this browser's push subscription for the signed-in user."""
    try:
        service = check_subscription(endpoint, p256dh, auth, svc.settings.push_allow_loopback)
    except PushError as exc:
        raise OpError(422, str(exc)) from None
    with svc.engine.begin() as conn:
        sub_id = targets.add_subscription(conn, svc.box, user.id, {"endpoint": endpoint, "p256dh": p256dh, "auth": auth},
                                          service, label.strip()[:100] or "this device", time.time())
        accounts.write_audit(conn, user, "push.subscribe", str(sub_id), {"service": service, "label": label[:100]}, ip)
        return next(s for s in targets.list_subscriptions(conn, user.id) if s["id"] == sub_id)


def unsubscribe(svc: Services, user: User, ip: str, sub_id: int) -> None:
    """Remove one of the user's own devices."""
    with svc.engine.begin() as conn:
        if not targets.delete_subscription(conn, sub_id, user.id):
            raise OpError(404, "no such push subscription of yours")
        store.drop_target_messages(conn, "push", sub_id, time.time())
        accounts.write_audit(conn, user, "push.unsubscribe", str(sub_id), {}, ip)


def test_push(svc: Services, notify: Notify, user: User, sub_id: int) -> int:
    """Queue a test push to one of the user's own devices."""
    with svc.engine.begin() as conn:
        if not any(s["id"] == sub_id for s in targets.list_subscriptions(conn, user.id)):
            raise OpError(404, "no such push subscription of yours")
        message_id = notices.test_message(conn, Target("push", sub_id, user.id), user.name, time.time())
    notify.kick()
    return message_id


def push_action(svc: Services, ip: str, token: str, action: str) -> JsonObject:
    """Acknowledge or snooze from a notification: the single-use token stands in for the session."""
    if action not in ("ack", "snooze"):
        raise OpError(422, "action is ack or snooze")
    with svc.engine.begin() as conn:
        found = targets.use_token(conn, token, time.time())
        user = accounts.get_user(conn, found.user_id) if found is not None else None
    if found is None or user is None:
        raise OpError(403, "this notification's action has expired or was already used; open the app")
    if user.disabled or not user.can("operator"):
        raise OpError(403, "acknowledging needs the operator role")
    try:
        minutes = SNOOZE_FROM_PUSH_MINUTES if action == "snooze" else 0
        alert = act(svc, user, ip, int(found.alert_id), action, note="from a push notification", minutes=minutes)
    except ServiceError as exc:
        raise OpError(exc.status, exc.message) from None
    return {"ok": True, "action": action, "alert": {"id": alert["id"], "state": alert["state"]}, "user": user.name}


def my_messages(conn: Connection, user_id: int, limit: int = 50) -> list[MessageView]:
    """What was sent to this person (their devices and personal channels)."""
    return notify_views.list_messages(conn, user_id=user_id, limit=limit)


def status(conn: Connection, notify: Notify) -> NotifyStatus:
    """Health of notifications: dead-man state, message counts, broken channels, worker liveness."""
    now = time.time()
    worker = notify.worker
    channels = targets.list_channels(conn)
    return {
        "monitoring": deadman.status(conn, notify.config, now, notify.started),
        "messages": store.counts(conn),
        "outbox_backlog": store.outbox_backlog(conn),
        "broken_channels": [str(c["name"]) for c in channels if c["status"] == "broken"],
        "worker": None if worker is None else {"running": True, "sent": worker.sent, "failed": worker.failed,
                                               "last_loop": worker.last_loop},
        "problems": notify.problems,
    }


def routes_view(notify: Notify) -> JsonObject:
    """The routing in force (file routes, or the default route)."""
    config = notify.config
    return {
        "routes": [r.model_dump() for r in config.effective_routes()],
        "escalations": [e.model_dump() for e in config.escalations],
        "default": not config.routes,
        "delivery": config.delivery.model_dump(),
        "push": config.push.model_dump(),
        "deadman": {"url_set": bool(config.deadman.url), "interval_seconds": config.deadman.interval_seconds,
                    "silent_after_seconds": config.deadman.silent_after_seconds},
    }
