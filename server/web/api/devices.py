"""JSON API under /api/v1 (thin routes over store and views), /healthz and /metrics."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from server.auth.access import Admin, Operator, Viewer, caller_or_none, client_ip
from server.auth.grants import effective
from server.auth.passwords import UserError, create_user
from server.auth.policy import public
from server.auth.stepup import FreshAdmin
from server.config.inventory import DeviceSpec
from server.notify.channel_alarm import channel_alarm
from server.runtime import Services, get_services
from server.services import devices as devices_service
from server.services.bodies import DevicePatch
from server.store import accounts, device_views, grants
from server.store.db import ping
from server.store.devices import load_device, split_secrets
from server.store.metrics import history, labels_of
from server.store.notify import outbox_backlog
from server.web import metrics_export, views
from server.web.views import storage_health

router = APIRouter()
SvcDep = Annotated[Services, Depends(get_services)]
DeviceState = Literal["", "up", "degraded", "down", "unreachable", "unknown"]  # "" = any
RANGES = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "1y": 365 * 86400}


def _secret_keys(svc: Services, device_id: int) -> set[str]:
    with svc.reader.connect() as conn:
        row = load_device(conn, svc.box, device_id)
    return set(split_secrets(row.spec)[1]) if row else set()


@router.get("/healthz", tags=["meta"], dependencies=[public("health probes: answers only ok")])
def healthz(request: Request, svc: SvcDep) -> dict[str, Any]:
    """Liveness, database reachability, storage (free space, full), the writer's errors and backlogs, and failing
    notification channels (no sign-in needed). Anonymous callers get states and counts; channel names and error
    texts only go to signed-in callers."""
    backlog: int | None = None
    alarm = None
    try:
        with svc.reader.connect() as conn:
            ping(conn)
            backlog = outbox_backlog(conn)
            alarm = channel_alarm(conn)
        db = "ok"
    except Exception:
        db = "error"
    health = storage_health(svc)
    failing = [c.name for c in alarm.channels] if alarm else []
    notifications: dict[str, object] = {"failing_channels": failing, "unannounced": bool(alarm and alarm.unannounced)}
    if caller_or_none(request, svc) is None:  # an outside probe: no names, no driver texts or file paths
        notifications["failing_channels"] = len(failing)
        health["storage"]["last_error"] = None
        health["writer"]["last_error"] = None
    degraded = db != "ok" or health["storage"]["state"] != "ok" or bool(alarm and alarm.degraded)
    return {"status": "degraded" if degraded else "ok", "database": db, "polling": svc.dispatcher is not None,
            "notifications": notifications, **health, "notify": {"outbox_backlog": backlog}}


@router.get("/metrics", tags=["meta"], response_class=PlainTextResponse)
def metrics(svc: SvcDep, _p: Viewer, scope: Literal["all", "process"] = "all") -> PlainTextResponse:
    """Prometheus text format: device states, latest metrics, the poller's own figures (`scope=process`: only the
    process's own figures, cheap at any fleet size)."""
    text = metrics_export.render(svc, devices=scope == "all")
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/api/v1/me", tags=["users"])
def me(p: Viewer) -> dict[str, Any]:
    """Who am I, and which named permissions (grants) I hold."""
    return {"id": p.user.id, "name": p.user.name, "role": p.user.role, "grants": effective(p.role, p.grants)}


@router.get("/api/v1/devices", tags=["devices"])
def list_devices(
    svc: SvcDep,
    _p: Viewer,
    q: Annotated[str, Query(max_length=200)] = "",
    tag: Annotated[str, Query(max_length=64)] = "",
    state: DeviceState = "",
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Devices, problems first; filter by text, tag and state."""
    with svc.reader.connect() as conn:
        return dict(views.device_list(conn, q, tag, state, limit, offset))


@router.post("/api/v1/devices", tags=["devices"], status_code=201)
def add_device(svc: SvcDep, p: Admin, request: Request, spec: DeviceSpec) -> dict[str, Any]:
    """Add a device; secrets are stored encrypted and never returned."""
    return _detail(svc, devices_service.add_device(svc, p, client_ip(request), spec))


def _detail(svc: Services, device_id: int) -> dict[str, Any]:
    keys = _secret_keys(svc, device_id)
    with svc.reader.connect() as conn:
        found = views.device_detail(conn, device_id, keys)
    if found is None:
        raise HTTPException(404, "no such device")
    return dict(found)


@router.get("/api/v1/devices/{device_id}", tags=["devices"])
def get_device(svc: SvcDep, _p: Viewer, device_id: int) -> dict[str, Any]:
    """Facts, interfaces, resources, latest metrics, checks and recent state changes of a device."""
    return _detail(svc, device_id)


@router.patch("/api/v1/devices/{device_id}", tags=["devices"])
def patch_device(
    svc: SvcDep, p: Admin, request: Request, device_id: int, body: DevicePatch
) -> dict[str, Any]:
    """Change some fields; omitted secrets keep their stored values; unknown fields are refused.

    Changing SNMP or SSH access (credentials, host keys, or the address of a device that has them) needs a fresh
    second factor (step-up), as a password does."""
    devices_service.patch_device(svc, p, client_ip(request), device_id, body)
    return _detail(svc, device_id)


@router.delete("/api/v1/devices/{device_id}", tags=["devices"], status_code=204)
def remove_device(svc: SvcDep, p: Admin, request: Request, device_id: int) -> None:
    """Delete a device with its history."""
    devices_service.remove_device(svc, p, client_ip(request), device_id)


@router.post("/api/v1/devices/{device_id}/poll", tags=["devices"], response_model=None)
async def poll_device(svc: SvcDep, _p: Operator, device_id: int) -> JSONResponse | dict[str, int]:
    """Run every check of the device now and wait until the result is stored: 200 {"ran", "checks"} (fewer ran than
    there are checks: the others were still running). 202 {"ran", "pending"} when a worker still waits for a check in
    flight after 30 s (or a result is not stored yet): it may be polled and stored later. 409 when its checks were
    still running, or the poll could not run, and none was polled; 404 when the device has no checks scheduled
    (unknown, or polling is off for it); 503 when no worker took it (none running for its site?) or this process
    does not poll."""
    done = await devices_service.poll_now(svc, device_id)
    if done is None:
        raise HTTPException(503, "polling is not running in this process")
    match done.outcome:
        case "none":
            raise HTTPException(404, "no checks scheduled for that device (unknown, or polling is off for it)")
        case "pending":
            return JSONResponse({"ran": done.ran, "pending": done.pending}, status_code=202)
        case "untaken":
            raise HTTPException(503, "no worker took it within 30 s: are the workers of its site running? (see Workers)")
        case "not-polled":
            raise HTTPException(409, "not polled: its checks are still running, or the poll could not run (see the "
                                     "log); try again in a moment")  # fmt: skip
    return {"ran": done.ran, "checks": done.checks}


@router.get("/api/v1/devices/{device_id}/history", tags=["devices"])
def device_history(
    svc: SvcDep,
    _p: Viewer,
    device_id: int,
    metric: Annotated[str, Query(min_length=1, max_length=64)],
    range_: Annotated[str, Query(alias="range", pattern="^(1h|6h|24h|7d|30d|1y)$")] = "24h",
    ifIndex: Annotated[str | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    """Points of a metric over a range (raw, then 5-minute and hourly rollups for longer ranges)."""
    now = time.time()
    with svc.reader.connect() as conn:
        if not device_views.exists(conn, device_id):
            raise HTTPException(404, "no such device")
        points = history(conn, device_id, metric, now - RANGES[range_], now, svc.settings.raw_retention_hours)
    if ifIndex is not None:
        points = [pt for pt in points if f'"ifIndex":"{ifIndex}"' in pt["labels"]]
    series: dict[str, list[list[float]]] = {}
    for pt in points:
        series.setdefault(pt["labels"], []).append([pt["ts"], pt["value"]])
    return {
        "metric": metric,
        "range": range_,
        "items": [{"labels": labels_of(k), "points": v} for k, v in series.items()],
    }


class NewUser(BaseModel):
    """A user to create."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(max_length=64)
    role: str = Field(pattern="^(viewer|operator|admin)$")
    password: str = Field(min_length=10, max_length=1024)


@router.get("/api/v1/users", tags=["users"])
def list_users(svc: SvcDep, _p: Admin) -> dict[str, Any]:
    """All users (never their password hashes)."""
    with svc.reader.connect() as conn:
        held = grants.by_user(conn)
        return {
            "items": [
                {"id": u.id, "name": u.name, "role": u.role, "disabled": u.disabled,
                 "grants": effective(u.role, held.get(u.id, frozenset()))}
                for u in accounts.list_users(conn)
            ]
        }


@router.post("/api/v1/users", tags=["users"], status_code=201)
def add_user(svc: SvcDep, p: FreshAdmin, request: Request, body: NewUser) -> dict[str, Any]:
    """Create a user (needs a fresh second factor when called from a browser session)."""
    try:
        with svc.engine.begin() as conn:
            user_id = create_user(conn, body.name, body.role, body.password)
            accounts.write_audit(conn, p.user, "user.create", body.name, {"role": body.role}, client_ip(request))
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"id": user_id, "name": body.name, "role": body.role}


@router.get("/api/v1/audit", tags=["audit"])
def audit_log(
    svc: SvcDep, _p: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100, before: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    """Audit entries, newest first; page with `before` = the last id seen."""
    with svc.reader.connect() as conn:
        items = accounts.read_audit(conn, limit, before)
    return {"items": items, "limit": limit, "next_before": items[-1]["id"] if len(items) == limit else None}
