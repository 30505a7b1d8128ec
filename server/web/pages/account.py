"""Account pages: overview with sessions on every device, password change, and the step-up ("confirm it's you") page."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth import loginflow, totp
from server.auth.access import Principal, Viewer, client_ip
from server.auth.passwords import UserError
from server.auth.stepup import FreshSession, is_fresh, same_site_path
from server.config.timezones import canonical_tz, zone_names
from server.runtime import Services, get_services
from server.services import users as usermgmt
from server.store import accounts, prefs, sessions, twofactor
from server.web.fields import Code, Link, Password
from server.web.pages.common import render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, svc: SvcDep, p: Viewer, done: Annotated[str, Query(max_length=64)] = "") -> Response:
    """Your second factors, your time zone and your sessions on every device."""
    return _account(request, svc, p, done)


def _account(request: Request, svc: Services, p: Principal, done: str, tz_error: str = "", tz_typed: str = "") -> Response:
    with svc.reader.connect() as conn:
        have = twofactor.factors(conn, p.user.id)
        mine = sessions.list_for_user(conn, p.user.id, p.session_id)
        keys = twofactor.list_passkeys(conn, p.user.id)
        tz_pref = prefs.get_tz(conn, p.user.id)
    return render(request, "account.html", status=422 if tz_error else 200, factors=have, sessions=mine, passkeys=keys,
                  fresh=is_fresh(p, svc.settings), done=done, tz_pref=tz_pref, tz_error=tz_error, tz_typed=tz_typed,
                  zone_names=zone_names())  # fmt: skip


@router.post("/account/timezone")
def timezone_form(
    request: Request, svc: SvcDep, p: Viewer, tz: Annotated[str, Form(max_length=64)] = "",
    auto: Annotated[str, Form(max_length=1)] = "", browser: Annotated[str, Form(max_length=1)] = "",
) -> Response:  # fmt: skip
    """Your time zone for the times pages show: chosen here (any case), the browser's (on a first visit, or asked
    for again with `browser`)."""
    if browser and not auto:
        with svc.engine.begin() as conn:
            prefs.clear_tz(conn, p.user.id)
            accounts.write_audit(conn, p.user, "account.timezone", p.user.name, {"tz": "browser"}, client_ip(request))
        return RedirectResponse("/account?done=tz-browser", status_code=303)
    typed = tz.strip()
    found = canonical_tz(typed)
    if found is None:
        if not auto:
            why = f"Unknown time zone {typed[:64]!r}: choose one from the list, or type a name such as Europe/Berlin."
            return _account(request, svc, p, "", why, typed[:64])
        found = "UTC"  # a browser zone this system does not know: UTC, stored, so the browser is not asked again
    tz = found
    with svc.engine.begin() as conn:
        if auto and prefs.get_tz(conn, p.user.id) is not None:
            return Response(status_code=204)  # a choice (or an earlier visit) stands: the browser never overrides it
        prefs.set_tz(conn, p.user.id, tz, auto=bool(auto))
        if not auto:
            accounts.write_audit(conn, p.user, "account.timezone", p.user.name, {"tz": tz}, client_ip(request))
    if auto:
        return Response(status_code=204)
    return RedirectResponse("/account?done=tz", status_code=303)


@router.post("/account/sessions/{handle}/end")
def end_session_form(request: Request, svc: SvcDep, p: Viewer, handle: str) -> Response:
    """Sign out one of your sessions (this one included)."""
    with svc.engine.begin() as conn:
        found = sessions.end_by_public_id(conn, p.user.id, handle[:64])
        if found:
            accounts.write_audit(conn, p.user, "session.end", p.user.name, {"session": handle[:20]}, client_ip(request))
    if not found:
        return render(request, "error.html", status=404, status_code=404, message="No such session.")
    return RedirectResponse("/account?done=session", status_code=303)


@router.post("/account/sessions/end-others")
def end_others_form(request: Request, svc: SvcDep, p: Viewer) -> Response:
    """Sign out everywhere but here."""
    with svc.engine.begin() as conn:
        ended = sessions.end_for_user(conn, p.user.id, keep=p.session_id)
        accounts.write_audit(conn, p.user, "session.end_others", p.user.name, {"ended": ended}, client_ip(request))
    return RedirectResponse("/account?done=others", status_code=303)


@router.get("/account/password", response_class=HTMLResponse)
def password_page(request: Request, p: FreshSession) -> Response:
    """The password form."""
    return render(request, "account_password.html", error=None)


@router.post("/account/password", response_class=HTMLResponse)
def password_submit(
    request: Request, svc: SvcDep, p: FreshSession, current: Password = "", new: Password = "", again: Password = ""
) -> Response:
    """Change the password: every session ends; this browser gets a new one. A wrong current password counts as a
    wrong step-up proof (enough of them sign this session out)."""
    if new != again:
        return render(request, "account_password.html", status=422, error="The two new passwords differ.")
    ip = client_ip(request)
    try:
        with svc.engine.begin() as conn:
            usermgmt.change_password(conn, p.user, ip, current, new)
            token, _ = sessions.create(conn, p.user.id, ip, request.headers.get("user-agent"), verified_at=p.verified_at)
    except usermgmt.WrongPassword:
        if loginflow.wrong_current_password(svc, p, ip):
            return RedirectResponse("/login?next=/account/password", status_code=303)
        error = f"The current password is wrong ({svc.settings.stepup_max_failures} wrong tries sign this session out)."
        return render(request, "account_password.html", status=422, error=error)
    except UserError as exc:
        return render(request, "account_password.html", status=422, error=str(exc))
    response = RedirectResponse("/account?done=password", status_code=303)
    loginflow.set_session_cookie(response, request, svc, token)
    return response


@router.get("/account/verify", response_class=HTMLResponse)
def verify_page(request: Request, svc: SvcDep, p: Viewer, next: Annotated[str, Query(max_length=2000)] = "/account") -> Response:
    """Confirm it's you: a second factor (or the password when you have none) before a sensitive change."""
    with svc.reader.connect() as conn:
        have = twofactor.factors(conn, p.user.id)
    return render(request, "account_verify.html", factors=have, next=same_site_path(next, "/account"), error=None)


@router.post("/account/verify", response_class=HTMLResponse)
def verify_submit(
    request: Request, svc: SvcDep, p: Viewer, code: Code = "", password: Password = "", next: Link = "/account"
) -> Response:
    """Check the code (or password); on success this session is fresh for `stepup_minutes`."""
    target = same_site_path(next, "/account")
    ip = client_ip(request)
    with svc.engine.begin() as conn:
        have = twofactor.factors(conn, p.user.id)
        method = None
        if have.any and code:
            method = totp.verify_code(conn, svc.box, p.user.id, code)
        elif not have.any and password:
            method = "password" if usermgmt.password_matches(conn, p.user.id, password) else None
        ended = False
        if method is None:
            ended = loginflow.stepup_failed(conn, svc.settings, p, ip, "code" if have.any else "password")
        elif p.session_id is not None:
            sessions.mark_verified(conn, p.session_id)
            accounts.write_audit(conn, p.user, "stepup", p.user.name, {"method": method}, ip)
    if ended:
        return RedirectResponse("/login?next=" + quote(target, safe="/"), status_code=303)
    if method is None:
        error = f"That did not match ({svc.settings.stepup_max_failures} wrong tries sign this session out)."
        return render(request, "account_verify.html", status=403, factors=have, next=target, error=error)
    return RedirectResponse(target, status_code=303)
