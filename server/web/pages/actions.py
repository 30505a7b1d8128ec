"""Action pages: the panel on device and alert pages, the confirmation step, the run (live output) and history."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from server.actions.catalog import ActionSpec
from server.actions.gate import Prepared, Refused, RunRequest, check, refuse_body
from server.actions.plan import prefill, targets_of
from server.actions.runner import manager
from server.auth.access import Principal, Viewer, client_ip
from server.runtime import Services, get_services
from server.services.actions import offered, run_view, start_run
from server.store import runs as store
from server.store.runs import DeviceInfo
from server.web.pages.common import TEMPLATES, render, render_error

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
PANEL_RUNS = 5
PARAM_PREFIX = "param_"
VERDICTS = {
    "fixed": "verified",
    "failing": "not fixed",
    "regressed": "fixed, then failed again",
    "unverified": "not verified",
    "skipped": "not checked",
    "checking": "checking…",
}
DANGER = {"low": "low risk", "medium": "changes the device", "high": "dangerous"}


def _device_of(request: Request, svc: Services, device_id: int) -> DeviceInfo | None:
    """The device with its secrets, read once per page however many parts of it (panel, rows) ask."""
    cache: dict[int, DeviceInfo | None] = getattr(request.state, "action_devices", None) or {}
    request.state.action_devices = cache
    if device_id not in cache:
        cache[device_id] = _device(svc, device_id)
    return cache[device_id]


def action_panel(request: Request, device_id: int, alert_id: int | None = None) -> dict[str, Any]:
    """What the Actions section of a device or alert page shows (called from _actions.html while rendering)."""
    svc: Services = request.app.state.services
    principal = getattr(request.state, "principal", None)
    mgr = manager(svc)
    device = _device_of(request, svc, device_id)
    with svc.reader.connect() as conn:
        alert = store.alert_brief(conn, alert_id) if alert_id is not None else None
        runs = store.list_runs(conn, None if alert_id is not None else device_id, alert_id, PANEL_RUNS)
    rule = alert.rule if alert else None
    actions: list[dict[str, Any]] = []
    if device is not None and isinstance(principal, Principal):
        for a in offered(svc, principal, device, rule):
            query: dict[str, str] = {"alert": str(alert_id)} if alert_id is not None else {}
            if alert is not None:  # an alert on a port opens the port's actions with that port filled in
                filled = prefill(a, targets_of(device, a), alert.labels)
                query.update({PARAM_PREFIX + k: v for k, v in filled.items()})
            href = f"/devices/{device_id}/actions/{a.id}" + (f"?{urlencode(query)}" if query else "")
            actions.append({"id": a.id, "title": a.title, "description": a.description, "danger": a.danger, "href": href,
                            "suggested": bool(rule and rule in a.applies_to.rules)})  # fmt: skip
    if not mgr.catalog.actions:
        note = "No actions are configured (setting actions_file)."
    elif isinstance(principal, Principal) and not principal.user.can("operator"):
        note = "Viewers cannot run actions."
    else:
        note = "No action in the catalog applies to this device."
    history = f"/alerts/{alert_id}/runs" if alert_id is not None else f"/devices/{device_id}/runs"
    return {"device_id": device_id, "alert_id": alert_id, "actions": actions, "runs": runs, "note": note, "history": history}


def row_actions(request: Request, device_id: int, kind: str) -> list[dict[str, str]]:
    """Actions offered on this device that take one thing of `kind` (e.g. interface): what a row of that kind links to."""
    svc: Services = request.app.state.services
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal) or not principal.user.can("operator"):  # a viewer is offered none
        return []
    device = _device_of(request, svc, device_id)
    if device is None:
        return []
    out = []
    for a in offered(svc, principal, device):
        wanted = [p for p in a.params if p.type == kind]
        if len(wanted) == 1 and all(p is wanted[0] or p.default is not None for p in a.params):
            out.append({"id": a.id, "title": a.title, "param": PARAM_PREFIX + wanted[0].name, "danger": a.danger})
    return out


TEMPLATES.env.globals["action_panel"] = action_panel
TEMPLATES.env.globals["row_actions"] = row_actions
TEMPLATES.env.globals["verdict_label"] = lambda v: VERDICTS.get(v or "", v or "")
TEMPLATES.env.globals["danger_label"] = lambda d: DANGER.get(d, d)


def _params(source: Any) -> dict[str, str]:
    return {k[len(PARAM_PREFIX) :]: v for k, v in source.items() if k.startswith(PARAM_PREFIX) and isinstance(v, str)}


def _confirm(
    request: Request,
    action: ActionSpec,
    device: DeviceInfo,
    prepared: Prepared | None,
    params: dict[str, str],
    alert_id: int | None,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "action_confirm.html",
        status=status,
        action=action,
        device=device.row,
        prepared=prepared,
        params=params,
        alert_id=alert_id,
        alert_title=prepared.alert_title if prepared else None,
        error=error,
        targets=targets_of(device, action),
    )


async def _preview(
    request: Request, svc: Services, p: Principal, device_id: int, action_id: str, params: dict[str, str], alert: int | None
) -> tuple[ActionSpec, DeviceInfo, Prepared | None, str | None]:
    """The action, the device, the plan (or why there is none) for the confirmation page."""
    mgr = manager(svc)
    body = RunRequest(device=device_id, params=dict(params), alert=alert)
    action = mgr.catalog.get(action_id)
    device = await run_in_threadpool(_device, svc, device_id)
    if action is None or device is None:
        raise Refused(404, "No such action." if action is None else "No such device.")
    try:
        return action, device, await check(svc, mgr.catalog, p, client_ip(request), action_id, body, run=False), None
    except Refused as exc:
        if exc.status in (403, 404) or not action.params:
            raise
        return action, device, None, exc.message


def _device(svc: Services, device_id: int) -> DeviceInfo | None:
    with svc.reader.connect() as conn:
        return store.device_info(conn, svc.box, device_id)


@router.get("/devices/{device_id}/actions/{action_id}", response_class=HTMLResponse)
async def confirm_page(
    request: Request, svc: SvcDep, p: Viewer, device_id: int, action_id: str, alert: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    """Step two of two: exactly what will run, parameters, and (for dangerous actions) the typed name and reason."""
    params = _params(request.query_params)
    try:
        action, device, prepared, error = await _preview(request, svc, p, device_id, action_id, params, alert)
    except Refused as exc:
        return render_error(request, exc.status, exc.message)
    error = error if params else None  # first visit from the action link: show the form, not "is required"
    return _confirm(request, action, device, prepared, params, alert, error, 200 if error is None else 422)


@router.post("/devices/{device_id}/actions/{action_id}/run")
async def run_form(request: Request, svc: SvcDep, p: Viewer, device_id: int, action_id: str) -> Response:
    """The Run button: the same checks as the API (every refusal audited); then the live run page."""
    form = await request.form()
    params = _params(form)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    ip = client_ip(request)
    try:
        alert = int(fields["alert"]) if fields.get("alert") else None
        body = RunRequest(
            device=device_id, params=dict(params), reason=fields.get("reason", ""), confirm=fields.get("confirm"), alert=alert
        )
    except (ValueError, ValidationError):
        exc = await refuse_body(svc, p, ip, action_id, "the form was not valid")
        return render_error(request, exc.status, exc.message)
    try:
        action, device, shown, _error = await _preview(request, svc, p, device_id, action_id, params, alert)
    except Refused:
        shown = None  # the run below refuses it again, with an audit entry
    else:
        if shown is not None and fields.get("expected") != shown.plan.digest:
            message = "The command is not the one you confirmed (the parameters changed). Check it again."
            return _confirm(request, action, device, shown, params, alert, message, 409)
    try:
        run_id, _prepared = await start_run(svc, p, ip, action_id, body)
    except Refused as exc:
        if shown is None or exc.status in (403, 404):
            return render_error(request, exc.status, exc.message)
        return _confirm(request, action, device, shown, params, alert, exc.message, exc.status)
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
async def run_page(request: Request, svc: SvcDep, _p: Viewer, run_id: int) -> Response:
    """A run: status, exit code, duration, verification, the exact command and its output (refresh link; JS streams)."""
    data = await run_in_threadpool(run_view, svc, run_id)
    if data is None:
        return render_error(request, 404, "No such run.")
    return render(request, "action_run.html", r=data)


def _history(request: Request, svc: Services, title: str, back: str, device_id: int | None, alert_id: int | None) -> Response:
    with svc.reader.connect() as conn:
        runs = store.list_runs(conn, device_id, alert_id, 200)
    return render(request, "action_runs.html", runs=runs, title=title, back=back)


@router.get("/devices/{device_id}/runs", response_class=HTMLResponse)
def device_runs(request: Request, svc: SvcDep, _p: Viewer, device_id: int) -> Response:
    """Every action run on one device, newest first."""
    with svc.reader.connect() as conn:
        device = store.device_info(conn, svc.box, device_id)
    if device is None:
        return render_error(request, 404, "No such device.")
    return _history(request, svc, f"Actions run on {device.row.name}", f"/devices/{device_id}", device_id, None)


@router.get("/alerts/{alert_id}/runs", response_class=HTMLResponse)
def alert_runs(request: Request, svc: SvcDep, _p: Viewer, alert_id: int) -> Response:
    """Every action run for one alert, newest first."""
    with svc.reader.connect() as conn:
        alert = store.alert_brief(conn, alert_id)
    if alert is None:
        return render_error(request, 404, "No such alert.")
    return _history(request, svc, f"Actions run for alert #{alert_id}", f"/alerts/{alert_id}", None, alert_id)
