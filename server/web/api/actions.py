"""JSON API of remediation actions: the catalog, previews, runs (started by catalog id only), history, live output."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from server.actions.catalog import load_catalog
from server.actions.gate import Prepared, Refused, RunRequest, check, refuse_body
from server.actions.plan import prefill, targets_of
from server.actions.runner import LiveRun, RunManager, manager
from server.auth.access import Admin, Principal, Viewer, client_ip
from server.config.yamlsrc import ConfigError
from server.runtime import Services, get_services
from server.services.actions import offered, run_view, start_run
from server.store import accounts
from server.store import runs as store
from server.store.runs import DeviceInfo
from server.web.fields import RowId
from server.web.streams import SESSION_CHECK_SECONDS, session_alive

router = APIRouter(tags=["actions"])
SvcDep = Annotated[Services, Depends(get_services)]
BODY_MAX = 64 * 1024
HEARTBEAT = 15.0
_RUN_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": RunRequest.model_json_schema()}}}}


def _device(svc: Services, device_id: int) -> DeviceInfo:
    with svc.reader.connect() as conn:
        info = store.device_info(conn, svc.box, device_id)
    if info is None:
        raise HTTPException(404, "no such device")
    return info


def _labels_of(svc: Services, alert_id: int | None) -> tuple[str, dict[str, str]] | None:
    """The alert's rule and labels (what fills in an action opened from it)."""
    if alert_id is None:
        return None
    with svc.reader.connect() as conn:
        alert = store.alert_brief(conn, alert_id)
    if alert is None:
        raise HTTPException(404, "no such alert")
    return alert.rule, dict(alert.labels)


@router.get("/api/v1/actions")
def list_actions(svc: SvcDep, p: Viewer, device: RowId = None, alert: RowId = None) -> dict[str, Any]:
    """The catalog; with ?device=ID only the actions that apply to that device and that your role may run, each with
    `choices` (per parameter naming a port, disk, file system or service: what the device has, by name and state,
    dangerous ones marked) and, with ?alert=ID, `prefill` (the parameters the alert names)."""
    if device is None:
        return {"items": [a.public() for a in manager(svc).catalog.actions.values()]}
    labels = _labels_of(svc, alert)
    rule = labels[0] if labels else None
    info = _device(svc, device)
    items = []
    for action in offered(svc, p, info, rule):
        targets = targets_of(info, action)
        choices = {name: [c.public() for c in found] for name, found in targets.items()}
        filled = prefill(action, targets, labels[1]) if labels else {}
        items.append(
            {
                **action.public(),
                "suggested": bool(rule and rule in action.applies_to.rules),
                "choices": choices,
                "prefill": filled,
            }
        )
    return {"items": items}


@router.get("/api/v1/actions/{action_id}")
def get_action(svc: SvcDep, _p: Viewer, action_id: str) -> dict[str, Any]:
    """One catalog entry: parameters, danger, role, applies-to, and the command template or SET steps."""
    action = manager(svc).catalog.get(action_id)
    if action is None:
        raise HTTPException(404, "no such action")
    return action.public()


async def _body(request: Request, svc: Services, p: Principal, action_id: str) -> RunRequest:
    ip = client_ip(request)
    raw = await request.body()
    if len(raw) > BODY_MAX:
        raise await refuse_body(svc, p, ip, action_id, f"request body over {BODY_MAX} bytes")
    try:
        data = json.loads(raw or b"{}")
        return RunRequest.model_validate(data)
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            extra = "not allowed (a run names a catalog action and its parameters, nothing else)"
            why = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: " + (extra if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors(include_url=False)
            )
        else:
            why = "the body is not JSON"
        raise await refuse_body(svc, p, ip, action_id, why[:1000]) from None


def _refused(exc: Refused) -> HTTPException:
    return HTTPException(exc.status, exc.message)


def _preview(prepared: Prepared) -> dict[str, Any]:
    a = prepared.action
    return {
        "action": a.id,
        "device": {"id": prepared.device.row.id, "name": prepared.device.row.name},
        "kind": a.kind,
        "danger": a.danger,
        "params": dict(prepared.values),
        "targets": {name: c.public() for name, c in prepared.chosen.items()},
        "command": prepared.plan.text,
        "verify_command": prepared.plan.verify_command,
        "expected": prepared.plan.digest,
        "needs": {"confirm_name": prepared.needs_confirmation, "reason": a.dangerous, "fresh_2fa": a.dangerous},
    }


@router.post("/api/v1/actions/{action_id}/preview", openapi_extra=_RUN_BODY)
async def preview(request: Request, svc: SvcDep, p: Viewer, action_id: str) -> dict[str, Any]:
    """Exactly what a run would do (the command with parameters filled in, or the SETs), without running it."""
    try:
        body = await _body(request, svc, p, action_id)
        prepared = await check(svc, manager(svc).catalog, p, client_ip(request), action_id, body, run=False)
    except Refused as exc:
        raise _refused(exc) from None
    return _preview(prepared)


@router.post("/api/v1/actions/{action_id}/run", status_code=202, openapi_extra=_RUN_BODY)
async def run(request: Request, svc: SvcDep, p: Viewer, action_id: str) -> JSONResponse:
    """Start a run (operator or the action's role; dangerous ones need confirm, reason and a fresh second factor)."""
    try:
        body = await _body(request, svc, p, action_id)
        run_id, prepared = await start_run(svc, p, client_ip(request), action_id, body)
    except Refused as exc:
        raise _refused(exc) from None
    data = {
        "id": run_id,
        "status": "running",
        "command": prepared.plan.text,
        "url": f"/api/v1/runs/{run_id}",
        "stream": f"/api/v1/runs/{run_id}/stream",
        "page": f"/runs/{run_id}",
    }
    return JSONResponse(data, status_code=202)


@router.post("/api/v1/actions/reload")
def reload_catalog(request: Request, svc: SvcDep, p: Admin) -> dict[str, Any]:
    """Re-read the catalog file; on errors the catalog in force stays and the errors are returned."""
    mgr = manager(svc)
    try:
        catalog = load_catalog(svc.settings.actions_file)
    except ConfigError as exc:
        raise HTTPException(422, {"errors": exc.problems, "kept": "the previous catalog stays in force"}) from None
    mgr.catalog = catalog
    with svc.engine.begin() as conn:
        target = str(svc.settings.actions_file or "none")
        accounts.write_audit(conn, p.user, "action.reload", target, {"count": len(catalog.actions)}, client_ip(request))
    return {"actions": len(catalog.actions)}


@router.get("/api/v1/runs")
def list_runs(
    svc: SvcDep,
    _p: Viewer,
    device: RowId = None,
    alert: RowId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: RowId = None,
) -> dict[str, Any]:
    """Run history, newest first, for a device, an alert, or everything; page with `before`."""
    with svc.reader.connect() as conn:
        items = store.list_runs(conn, device, alert, limit, before)
    return {"items": items, "limit": limit, "next_before": items[-1]["id"] if len(items) == limit else None}


@router.get("/api/v1/runs/{run_id}")
def get_run(svc: SvcDep, _p: Viewer, run_id: int) -> dict[str, Any]:
    """One run: who, why, exactly what ran, status, exit code, duration, output and the verification."""
    data = run_view(svc, run_id)
    if data is None:
        raise HTTPException(404, "no such run")
    return dict(data)


def _event(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def _stream(
    request: Request, svc: Services, mgr: RunManager, run_id: int, who: Principal
) -> AsyncIterator[str]:
    live: LiveRun | None = mgr.live.get(run_id)
    if live is None:
        stored = await run_in_threadpool(run_view, svc, run_id)
        if stored is None:
            return
        for stream, text in stored["output"]:
            yield _event("output", {"stream": stream, "text": text})
        keys = ("id", "status", "exit_code", "error", "duration", "truncated", "verification", "verification_detail")
        yield _event("status", {**{k: stored.get(k) for k in keys}, "finished": stored["finished"]})
        yield _event("end", {"id": run_id})
        return
    sent, last = 0, None
    next_check = time.monotonic() + SESSION_CHECK_SECONDS
    while True:
        version = live.transcript.version
        chunks = live.transcript.chunks[sent:]
        sent += len(chunks)
        for stream, text in chunks:
            yield _event("output", {"stream": stream, "text": text})
        state = live.state()
        if state != last:
            last = state
            yield _event("status", state)
        if live.finished:
            yield _event("end", {"id": run_id})
            return
        if await request.is_disconnected():
            return
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + SESSION_CHECK_SECONDS
            if not await session_alive(svc, who):
                yield _event("bye", {"reason": "signed out"})
                return
        before = live.transcript.version
        await live.transcript.wait(version, min(HEARTBEAT, SESSION_CHECK_SECONDS))
        if live.transcript.version == before and not live.finished:
            yield ": still running\n\n"


@router.get("/api/v1/runs/{run_id}/stream")
async def stream_run(request: Request, svc: SvcDep, p: Viewer, run_id: int) -> StreamingResponse:
    """Live output as Server-Sent Events: `output` ({stream, text}), `status`, then `end` (`bye` if the session ends)."""
    exists = await run_in_threadpool(run_view, svc, run_id)
    if exists is None:
        raise HTTPException(404, "no such run")
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    events = _stream(request, svc, manager(svc), run_id, p)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
