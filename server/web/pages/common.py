"""HTML pages (server-rendered, usable without JavaScript) over the same view models as the API."""

from __future__ import annotations

import hmac
import math
import re
import secrets
import time
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.concurrency import run_in_threadpool

import web
from server import logsafe
from server.auth import loginflow, notice
from server.auth.access import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Admin,
    LoginResult,
    Operator,
    Viewer,
    client_ip,
    login,
    request_scheme,
)
from server.auth.grants import effective
from server.auth.policy import public
from server.runtime import Services, get_services
from server.services import devices as devices_service
from server.services.hostkeys import trust_offered
from server.store import accounts, prefs
from server.web import views
from server.web.fields import Link, LoginText, Password

TEMPLATES = Jinja2Templates(directory=str(web.ROOT / "templates"))
TEMPLATES.env.autoescape = True
TEMPLATES.env.finalize = logsafe.finalize  # device text printed by any template: ESC shows as \x1b, never raw
TEMPLATES.env.filters["age"] = views.age
TEMPLATES.env.filters["bps"] = views.human_bps
TEMPLATES.env.filters["bytes"] = views.human_bytes
TEMPLATES.env.filters["duration"] = views.human_duration


@pass_context
def _when(ctx: Context, ts: float | None) -> str:
    """A moment in the signed-in user's time zone (UTC for nobody), with the zone's abbreviation."""
    if not ts:
        return "never"
    zone = ctx.get("zone")
    return datetime.fromtimestamp(ts, zone if isinstance(zone, tzinfo) else UTC).strftime("%Y-%m-%d %H:%M:%S %Z")


_ISO_UTC = re.compile(r"\b(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:Z\b|\+00:00)")


@pass_context
def _local_times(ctx: Context, text: str | None) -> str:
    """Stored text with its ISO UTC moments ("failed again at 2026-12-06T22:30:05Z", a certificate's
    "2027-01-01T00:00:00+00:00") in the user's time zone."""
    if not text:
        return ""

    def local(m: re.Match[str]) -> str:
        try:
            moment = datetime.fromisoformat(m[1]).replace(tzinfo=UTC)
        except ValueError:
            return m[0]
        return _when(ctx, moment.timestamp())

    return _ISO_UTC.sub(local, str(text))  # plain text out: escaped once more on output (JSON reads the same)


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["local_times"] = _local_times


def _segment(value: object) -> str:
    """One path segment of a link (a directory login "ops/night #2"): every reserved character escaped, "/" too (Jinja's
    urlencode keeps "/", which splits the segment). A route taking such a segment uses the `path` converter: the
    server sees "%2F" decoded to "/" again."""
    return quote(str(value), safe="")


TEMPLATES.env.filters["segment"] = _segment
_MACROS = TEMPLATES.env.get_template("_macros.html").module  # the building blocks every template may call
TEMPLATES.env.globals.update({name: getattr(_MACROS, name) for name in ("card", "post_buttons", "event_list")})
router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Render a template with the signed-in user and CSRF token in context."""
    principal = getattr(request.state, "principal", None)
    context.setdefault("user", principal.user if principal else None)
    context.setdefault("csrf", principal.csrf if principal else "")
    context.setdefault("grants", effective(principal.role, principal.grants) if principal else [])
    context["now"] = time.time()
    context["zone"], context["tz_set"] = user_zone(request)
    context["tz"] = getattr(context["zone"], "key", "UTC")
    if principal is not None and principal.kind == "session" and "failed_sign_ins" not in context:
        svc: Services = request.app.state.services
        context["failed_sign_ins"] = notice.banner(svc.reader, principal.name, request.url.path, svc.clock())
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status)


def user_zone(request: Request) -> tuple[tzinfo, bool]:
    """The signed-in user's time zone (UTC until one is set) and whether one is set."""
    principal = getattr(request.state, "principal", None)
    if principal is None or principal.user is None:
        return ZoneInfo("UTC"), True  # nobody to ask: no script should try to set one
    svc: Services = request.app.state.services
    with svc.reader.connect() as conn:
        pref = prefs.get_tz(conn, principal.user.id)
    if pref is None:
        return ZoneInfo("UTC"), False
    try:
        return ZoneInfo(pref.tz), True
    except (ZoneInfoNotFoundError, ValueError):  # a zone the system no longer knows
        return ZoneInfo("UTC"), True


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    """A plain error page (escaped)."""
    return render(request, "error.html", status=status, status_code=status, message=message)


def local_path(target: str | None, fallback: str = "/") -> str:
    """Only same-site relative paths (a form's `next` or `back` can't send anyone elsewhere), else `fallback`."""
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    return target


@router.get("/sw.js", dependencies=[public("the service worker script: static")])
def service_worker() -> Response:
    """The service worker, from the root so its scope is the whole app."""
    from fastapi.responses import FileResponse

    path = web.ROOT / "static" / "sw.js"
    return FileResponse(path, media_type="text/javascript", headers={"Cache-Control": "no-cache"})


@router.get("/login", response_class=HTMLResponse, dependencies=[public("the sign-in form")])
def login_page(request: Request, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """The sign-in form (a double-submit cookie protects it against login CSRF)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", next=local_path(next), login_csrf=token, error=None)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), max_age=3600)
    return response


def _secure(request: Request) -> bool:
    svc: Services = request.app.state.services
    return svc.settings.secure_cookies or request_scheme(request) == "https"


@router.post(
    "/login", response_class=HTMLResponse, dependencies=[public("sign-in: its double-submit form token, throttled")]
)
async def login_submit(
    request: Request,
    svc: SvcDep,
    username: LoginText = "",
    password: Password = "",
    csrf_token: LoginText = "",
    next: Link = "/",
) -> Response:
    """Check the password, start a fresh session, go where the user was heading."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), csrf_token.encode()):
        return render(
            request,
            "login.html",
            status=400,
            next=local_path(next),
            login_csrf=cookie or "",
            error="Your sign-in form expired. Please try again.",
        )
    ip = client_ip(request)
    name = username.replace("\x00", "\ufffd").strip()  # PostgreSQL text cannot hold NUL: a refusal, not a 500

    def work() -> tuple[str, str, str] | LoginResult:
        now = svc.clock()
        with svc.engine.begin() as conn:
            result = login(conn, svc.settings, name, password, ip, now)
            if result.user is None:
                why = {"throttled": round(result.throttled.wait)} if result.throttled else {}
                accounts.write_audit(conn, None, "login.throttled" if why else "login.failed", name[:64], why, ip)
                return result
            previous = request.cookies.get(SESSION_COOKIE)
            if previous:
                accounts.end_session(conn, accounts.digest(previous))  # never carry a session id across sign-in
            agent = request.headers.get("user-agent")
            return loginflow.start_after_password(conn, svc.settings, result.user, ip, agent, now)

    session = await run_in_threadpool(work)
    if isinstance(session, LoginResult):
        refused = session.throttled
        page = render(
            request,
            "login.html",
            status=429 if refused else 401,
            next=local_path(next),
            login_csrf=cookie,
            error=refused.message if refused else "Wrong user name or password.",
        )
        if refused:
            page.headers["Retry-After"] = str(math.ceil(refused.wait))
        return page
    response = RedirectResponse(loginflow.next_url(session[2], local_path(next)), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session[0],
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        max_age=svc.settings.session_max_hours * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, svc: SvcDep, p: Viewer) -> Response:
    """End this session."""
    with svc.engine.begin() as conn:
        if p.session_id:
            accounts.end_session(conn, p.session_id)
        accounts.write_audit(conn, p.user, "logout", p.user.name, {}, client_ip(request))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.post("/devices/{device_id}/host-keys")
def trust_key_form(
    request: Request,
    svc: SvcDep,
    p: Admin,
    device_id: int,
    fingerprint: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """The 'Trust this key' button (admin, CSRF-checked, audited)."""
    trust_offered(svc, p, client_ip(request), device_id, fingerprint)
    return RedirectResponse(f"/devices/{device_id}", status_code=303)


@router.post("/devices/{device_id}/poll")
async def poll_now(svc: SvcDep, _p: Operator, device_id: int) -> Response:
    """'Poll now' from the device page; the page then says whether it polled (a check still running is not polled
    again, and a process that does not poll cannot)."""
    done = await devices_service.poll_now(svc, device_id)
    return RedirectResponse(f"/devices/{device_id}?done={done.outcome if done else 'no-polling'}", status_code=303)


# What the device page says after 'Poll now' (its ?done=: PollNow.outcome, or no-polling).
POLL_WORDS = {
    "polled": ("ok", "Polled just now: what follows is the result."),
    "partly": ("warn", "Partly polled: some of its checks were still running and were not polled again. What follows is "
                       "the newest result of each."),
    "not-polled": ("warn", "Not polled: its checks are still running, or the poll could not run. What follows is the "
                           "last result; try again in a moment."),
    "pending": ("warn", "Still polling: a check was running, and it is polled after it. What follows is the last "
                        "result; a new one shows here once it is stored."),
    "untaken": ("warn", "Not polled: no worker took it. Are the workers of its site running? (Settings → Workers)"),
    "none": ("warn", "Not polled: polling is off for this device (or it has no checks)."),
    "no-polling": ("warn", "Not polled: this server process does not poll. What follows is the last result."),
}

