"""Notification pages: your devices (subscribe, test, remove) and what was sent to you; channels, dead letters, routing."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from server.auth.access import Admin, Operator, Viewer, client_ip
from server.config.inventory import error_message
from server.notify import deadman, ops
from server.notify.runtime import runtime, silent_label
from server.runtime import Services, get_services
from server.services.bodies import NewChannel
from server.store import accounts, notify_views
from server.store import notify as store
from server.store.notify_targets import list_channels, list_subscriptions
from server.web.fields import Flag, Link, Name
from server.web.pages.common import render, render_error, user_zone

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]


def _silent(svc: Services, request: Request) -> str:
    with svc.reader.connect() as conn:
        return silent_label(svc, conn, user_zone(request)[0])


@router.get("/notify", response_class=HTMLResponse)
def notify_page(request: Request, svc: SvcDep, p: Viewer, done: str = "") -> Response:
    """Your phones and browsers, a button to add this one, and what was sent to you."""
    with svc.reader.connect() as conn:
        devices = list_subscriptions(conn, p.user.id)
        sent = ops.my_messages(conn, p.user.id, 30)
    return render(request, "notify.html", devices=devices, sent=sent, silent_since=_silent(svc, request), done=done[:40])


@router.post("/notify/devices/{sub_id}/{action}")
def device_action(request: Request, svc: SvcDep, p: Viewer, sub_id: int, action: str) -> Response:
    """Test or remove one of your devices."""
    try:
        if action == "test":
            ops.test_push(svc, runtime(svc), p.user, sub_id)
        elif action == "delete":
            ops.unsubscribe(svc, p.user, client_ip(request), sub_id)
        else:
            return render_error(request, 404, "No such action.")
    except ops.OpError as exc:
        return render_error(request, exc.status, exc.message)
    return RedirectResponse(f"/notify?done={action}", status_code=303)


@router.get("/notify/channels", response_class=HTMLResponse)
def channels_page(request: Request, svc: SvcDep, p: Viewer) -> Response:
    """Channels and their health; for admins also dead letters and the form to add a channel."""
    return _channels(request, svc, p.user.can("admin"), full=p.user.can("operator"))


def _channels(request: Request, svc: Services, admin: bool, status: int = 200, error: str | None = None,
              form: dict[str, str] | None = None, full: bool = True) -> Response:
    notify = runtime(svc)
    with svc.reader.connect() as conn:
        channels = list_channels(conn, full)
        dead = notify_views.list_messages(conn, "dead", limit=50) if admin else []
        recent = notify_views.list_messages(conn, limit=20) if admin else []
        health = ops.status(conn, notify)
    silent = deadman.label(health["monitoring"]["silent_since"], zone=user_zone(request)[0])
    return render(request, "notify_channels.html", status=status, channels=channels, dead=dead, recent=recent, health=health,
                  routes=ops.routes_view(notify), error=error, form=form or {}, silent_since=silent,
                  no_base_url=not svc.settings.base_url)


@router.post("/notify/channels")
def channel_create(
    request: Request, svc: SvcDep, p: Admin, name: Name = "", url: Link = "", owner: Name = "", allow_unsafe: Flag = ""
) -> Response:
    """Add a channel from the form."""
    form = {"name": name, "owner": owner}
    try:
        body = NewChannel.model_validate({"name": name.strip(), "url": url.strip(), "user": owner.strip() or None,
                                          "allow_unsafe": bool(allow_unsafe)})
        ops.create_channel(svc, runtime(svc), p.user, client_ip(request), body.name, body.url, body.user, body.allow_unsafe)
    except ValidationError as exc:
        message = "; ".join(f"{'.'.join(map(str, e['loc']))}: {error_message(e)}" for e in exc.errors())
        return _channels(request, svc, True, 400, message, form)
    except ops.OpError as exc:
        return _channels(request, svc, True, 400, exc.message, form)
    return RedirectResponse("/notify/channels", status_code=303)


@router.post("/notify/channels/{channel_id}/test")
def channel_test(request: Request, svc: SvcDep, p: Operator, channel_id: int) -> Response:
    """Queue a test message on a channel."""
    try:
        ops.test_channel(svc, runtime(svc), p.user, client_ip(request), channel_id)
    except ops.OpError as exc:
        return render_error(request, exc.status, exc.message)
    return RedirectResponse("/notify/channels", status_code=303)


@router.post("/notify/channels/{channel_id}/delete")
def channel_delete(request: Request, svc: SvcDep, p: Admin, channel_id: int) -> Response:
    """Remove a channel made through the API or this page."""
    try:
        ops.delete_channel(svc, p.user, client_ip(request), channel_id)
    except ops.OpError as exc:
        return render_error(request, exc.status, exc.message)
    return RedirectResponse("/notify/channels", status_code=303)


@router.post("/notify/messages/{message_id}/{action}")
def message_action(request: Request, svc: SvcDep, p: Admin, message_id: int, action: str) -> Response:
    """Retry or discard a dead-lettered message."""
    if action not in ("retry", "discard"):
        return render_error(request, 404, "No such action.")
    with svc.engine.begin() as conn:
        done = store.requeue(conn, message_id, time.time()) if action == "retry" else store.discard(conn, message_id)
        if done:
            accounts.write_audit(conn, p.user, f"notify.{action}", str(message_id), {}, client_ip(request))
    if done and action == "retry":
        runtime(svc).kick()
    return RedirectResponse("/notify/channels", status_code=303)
