"""Terminal pages: ask why and open (a one-time ticket for the WebSocket), the admin's live sessions, replay, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from server.auth.access import Admin, Operator, client_ip
from server.auth.stepup import FreshOperator
from server.runtime import Services, get_services
from server.services.terminal import gate, records
from server.services.terminal.gate import TerminalRefused
from server.services.terminal.manager import manager
from server.store import runs as devices_store
from server.web.pages.common import TEMPLATES, render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
# xterm.js sizes its rows with <style> elements it creates: terminal pages allow inline styles, never inline scripts.
TERMINAL_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def terminal_offer(request: Request, device_id: int) -> dict[str, str | None]:
    """What the device page shows about the terminal (called from device.html while rendering)."""
    svc: Services = request.app.state.services
    principal = getattr(request.state, "principal", None)
    if principal is None or not principal.can("operator"):
        return {"href": None, "why": None}
    why = gate.may_offer(svc, principal, device_id)
    return {"href": None if why else f"/devices/{device_id}/terminal", "why": why}


TEMPLATES.env.globals["terminal_offer"] = terminal_offer


def _device_name(svc: Services, device_id: int) -> str:
    with svc.reader.connect() as conn:
        info = devices_store.device_info(conn, svc.box, device_id)
    return info.row.name if info else f"device {device_id}"


@router.get("/devices/{device_id}/terminal", response_class=HTMLResponse)
async def open_form(
    request: Request,
    svc: SvcDep,
    p: FreshOperator,
    device_id: int,
    alert: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """Ask why (or name the alert) before opening; step-up first, so the form is not lost to the verify page."""
    why = await run_in_threadpool(gate.may_offer, svc, p, device_id)
    name = await run_in_threadpool(_device_name, svc, device_id)
    return render(request, "terminal_open.html", status=403 if why else 200, device_id=device_id, device_name=name,
                  alert_id=alert, error=why, reason="")  # fmt: skip


@router.post("/devices/{device_id}/terminal", response_class=HTMLResponse)
async def open_terminal(
    request: Request,
    svc: SvcDep,
    p: Operator,
    device_id: int,
    reason: Annotated[str, Form(max_length=500)] = "",
    alert: Annotated[int | None, Form(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """The Open button (CSRF-checked): every check again, audited; then the terminal page with a one-time ticket."""
    ip = client_ip(request)
    try:
        allowed = await run_in_threadpool(gate.check, svc, p, ip, device_id, reason, alert)
    except TerminalRefused as exc:
        name = await run_in_threadpool(_device_name, svc, device_id)
        return render(request, "terminal_open.html", status=exc.status, device_id=device_id, device_name=name,
                      alert_id=alert, error=exc.message, reason=reason)  # fmt: skip
    ticket = manager(svc).issue(allowed, p, ip)
    page = render(request, "terminal.html", device_id=device_id, device_name=allowed.device_name, ticket=ticket,
                  reason=allowed.reason)  # fmt: skip
    page.headers["Content-Security-Policy"] = TERMINAL_CSP
    return page


@router.get("/terminal", response_class=HTMLResponse)
async def sessions_page(request: Request, svc: SvcDep, _p: Admin) -> Response:
    """Live sessions (an admin may end one) and recorded ones."""
    listing = await run_in_threadpool(records.listing, svc, set(manager(svc).live))
    return render(request, "terminal_sessions.html", listing=listing)


@router.post("/terminal/{session_id}/end")
async def end_session(svc: SvcDep, p: Admin, session_id: int) -> Response:
    """An admin ends a live session (the user sees why; the audit says who)."""
    await manager(svc).end_by_admin(session_id, p)
    return RedirectResponse("/terminal", status_code=303)


@router.get("/terminal/sessions/{session_id}", response_class=HTMLResponse)
async def replay_page(request: Request, svc: SvcDep, _p: Admin, session_id: int) -> Response:
    """Who, when, where, why, and a player that replays the recording."""
    row = await run_in_threadpool(records.session, svc, session_id)
    page = render(request, "terminal_replay.html", s=row, live=session_id in manager(svc).live)
    page.headers["Content-Security-Policy"] = TERMINAL_CSP
    return page


@router.get("/terminal/sessions/{session_id}/cast")
async def download(request: Request, svc: SvcDep, p: Admin, session_id: int) -> Response:
    """The recording as an asciicast v2 file (plays in asciinema); audited."""
    row, text = await run_in_threadpool(records.cast, svc, p, client_ip(request), session_id)
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in row.device_name)
    return Response(text, media_type="application/x-asciicast",
                    headers={"Content-Disposition": f'attachment; filename="terminal-{session_id}-{name}.cast"'})  # fmt: skip
