"""JSON API for notifications: channels (URLs never returned), push devices, receipts, dead letters, status, push actions."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from server.auth.access import Admin, Operator, Viewer, client_ip
from server.auth.policy import public
from server.config.yamlsrc import ConfigError
from server.notify import ops
from server.notify.runtime import runtime
from server.runtime import Services, get_services
from server.services.bodies import NewChannel
from server.store import accounts, notify_views
from server.store import notify as store
from server.store.notify_targets import list_channels, list_subscriptions

router = APIRouter(tags=["notifications"])
SvcDep = Annotated[Services, Depends(get_services)]
MessageStatus = Literal["", "pending", "sent", "dead", "gone", "skipped", "grouped", "summarized"]


class PushKeys(BaseModel):
    """The browser's encryption keys for this subscription."""

    model_config = ConfigDict(extra="forbid")
    p256dh: str = Field(min_length=80, max_length=100)
    auth: str = Field(min_length=16, max_length=32)


class NewSubscription(BaseModel):
    """PushSubscription.toJSON() plus a label for the device list."""

    model_config = ConfigDict(extra="forbid")
    endpoint: str = Field(min_length=10, max_length=1000)
    expirationTime: float | None = None
    keys: PushKeys
    label: str = Field(default="", max_length=100)


class PushAction(BaseModel):
    """Sent by the service worker when an action button of a notification is tapped."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=20, max_length=200)
    action: Literal["ack", "snooze"]


def _run(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except ops.OpError as exc:
        raise HTTPException(exc.status, exc.message) from None


@router.get("/api/v1/channels")
def get_channels(svc: SvcDep, p: Viewer) -> dict[str, Any]:
    """Channels with health (ok, failing, broken); URLs masked, and to viewers not shown at all."""
    with svc.reader.connect() as conn:
        return {"items": list_channels(conn, full=p.user.can("operator"))}


@router.post("/api/v1/channels", status_code=201)
def add_channel(svc: SvcDep, p: Admin, request: Request, body: NewChannel) -> dict[str, Any]:
    """Add a channel; link-local/metadata targets and non-web transports need allow_unsafe."""
    return dict(_run(ops.create_channel, svc, runtime(svc), p.user, client_ip(request), body.name, body.url, body.user,
                     body.allow_unsafe, body.enabled))


@router.delete("/api/v1/channels/{channel_id}", status_code=204)
def remove_channel(svc: SvcDep, p: Admin, request: Request, channel_id: int) -> None:
    """Remove a channel made through the API."""
    _run(ops.delete_channel, svc, p.user, client_ip(request), channel_id)


@router.post("/api/v1/channels/{channel_id}/test", status_code=202)
def test_channel(svc: SvcDep, p: Operator, request: Request, channel_id: int) -> dict[str, Any]:
    """Queue a test message; its receipt shows in /api/v1/notify/messages/{id}."""
    return {"message_id": _run(ops.test_channel, svc, runtime(svc), p.user, client_ip(request), channel_id)}


@router.get("/api/v1/notify/messages")
def get_messages(
    svc: SvcDep,
    _p: Admin,
    status: MessageStatus = "",
    alert: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Every message with its delivery receipts, newest first (status=dead: the dead letters)."""
    with svc.reader.connect() as conn:
        return {"items": notify_views.list_messages(conn, status, None, alert, limit, offset), "limit": limit, "offset": offset}


@router.get("/api/v1/notify/messages/{message_id}")
def get_message(svc: SvcDep, p: Viewer, message_id: int) -> dict[str, Any]:
    """One message and its receipts (your own, or any for admins)."""
    with svc.reader.connect() as conn:
        found = notify_views.get_message(conn, message_id)
    if found is None or (found["user_id"] != p.user.id and not p.user.can("admin")):
        raise HTTPException(404, "no such message")
    return dict(found)


@router.post("/api/v1/notify/messages/{message_id}/retry")
def retry_message(svc: SvcDep, p: Admin, request: Request, message_id: int) -> dict[str, Any]:
    """Send a dead-lettered message again."""
    with svc.engine.begin() as conn:
        if not store.requeue(conn, message_id, time.time()):
            raise HTTPException(409, "only dead-lettered messages can be retried")
        accounts.write_audit(conn, p.user, "notify.retry", str(message_id), {}, client_ip(request))
    runtime(svc).kick()
    return {"id": message_id, "status": "pending"}


@router.post("/api/v1/notify/messages/{message_id}/discard")
def discard_message(svc: SvcDep, p: Admin, request: Request, message_id: int) -> dict[str, Any]:
    """Give up on a dead-lettered or waiting message."""
    with svc.engine.begin() as conn:
        if not store.discard(conn, message_id):
            raise HTTPException(409, "only dead-lettered or waiting messages can be discarded")
        accounts.write_audit(conn, p.user, "notify.discard", str(message_id), {}, client_ip(request))
    return {"id": message_id, "status": "skipped"}


@router.get("/api/v1/notify/mine")
def my_messages(svc: SvcDep, p: Viewer, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """What was sent to you (your devices and personal channels), with receipts."""
    with svc.reader.connect() as conn:
        return {"items": ops.my_messages(conn, p.user.id, limit)}


@router.get("/api/v1/notify/status")
def notify_status(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """Dead-man state ('silent since'), message counts, broken channels, worker liveness."""
    notify = runtime(svc)
    with svc.reader.connect() as conn:
        return dict(ops.status(conn, notify))


@router.get("/api/v1/notify/routes")
def notify_routes(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """Routes and escalations in force."""
    return ops.routes_view(runtime(svc))


@router.post("/api/v1/notify/reload")
def notify_reload(svc: SvcDep, p: Admin, request: Request) -> dict[str, Any]:
    """Re-read the notifications file; on errors the previous config stays in force."""
    notify = runtime(svc)
    try:
        count = notify.reload()
    except ConfigError as exc:
        raise HTTPException(422, {"errors": exc.problems, "kept": "the previous notification config stays in force"}) from None
    with svc.engine.begin() as conn:
        accounts.write_audit(conn, p.user, "notify.reload", str(svc.settings.channels_file or "defaults"), {"channels": count},
                             client_ip(request))
    return {"channels": count, "problems": notify.problems}


@router.get("/api/v1/push/key")
def push_key(svc: SvcDep, _p: Viewer) -> dict[str, str]:
    """The VAPID public key (applicationServerKey for PushManager.subscribe)."""
    return {"public_key": runtime(svc).keys().public_key}


@router.get("/api/v1/push/subscriptions")
def get_subscriptions(svc: SvcDep, p: Viewer) -> dict[str, Any]:
    """Your subscribed devices."""
    with svc.reader.connect() as conn:
        return {"items": list_subscriptions(conn, p.user.id)}


@router.post("/api/v1/push/subscriptions", status_code=201)
def add_subscription(svc: SvcDep, p: Viewer, request: Request, body: NewSubscription) -> dict[str, Any]:
    """Subscribe this browser (https push services only; plain http only on loopback)."""
    return dict(_run(ops.subscribe, svc, p.user, client_ip(request), body.endpoint, body.keys.p256dh, body.keys.auth,
                     body.label or request.headers.get("user-agent", "")[:60]))


@router.delete("/api/v1/push/subscriptions/{sub_id}", status_code=204)
def remove_subscription(svc: SvcDep, p: Viewer, request: Request, sub_id: int) -> None:
    """Remove one of your devices."""
    _run(ops.unsubscribe, svc, p.user, client_ip(request), sub_id)


@router.post("/api/v1/push/subscriptions/{sub_id}/test", status_code=202)
def test_subscription(svc: SvcDep, p: Viewer, sub_id: int) -> dict[str, Any]:
    """Send a test notification to one of your devices."""
    return {"message_id": _run(ops.test_push, svc, runtime(svc), p.user, sub_id)}


@router.post("/api/v1/push/action", dependencies=[public("a notification button: its single-use signed token")])
def push_action(svc: SvcDep, request: Request, body: PushAction) -> dict[str, Any]:
    """Acknowledge or snooze (1 h) from a notification: no session; a single-use, short-lived token from the push."""
    return dict(_run(ops.push_action, svc, client_ip(request), body.token, body.action))
