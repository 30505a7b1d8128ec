"""Two-factor pages: the second sign-in step, forced enrolment, authenticator app, recovery codes, passkeys."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth import loginflow, throttle, totp
from server.auth.access import Principal, check_csrf, client_ip, current_principal
from server.auth.policy import Policy, declare
from server.auth.stepup import FreshOrEnrolling, FreshSession, same_site_path
from server.runtime import Services, get_services
from server.store import accounts, sessions, twofactor
from server.web.fields import Code, Link
from server.web.pages.common import render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]


@declare(Policy("viewer", stages=("2fa",)))
async def _half(request: Request, svc: SvcDep) -> Principal:
    principal = await current_principal(request, svc, stages=(sessions.SECOND_FACTOR,))
    await check_csrf(request, principal)
    return principal


# The half-session between the password and the second factor: good for the 2FA step and nothing else.
HalfSession = Annotated[Principal, Depends(_half)]


# ---------------------------------------------------------------- second sign-in step


@router.get("/login/2fa", response_class=HTMLResponse)
def second_step_page(
    request: Request, svc: SvcDep, p: HalfSession, next: Annotated[str, Query(max_length=2000)] = "/"
) -> Response:
    """Ask for the code from the authenticator app, a recovery code, or a passkey."""
    with svc.reader.connect() as conn:
        have = twofactor.factors(conn, p.user.id)
    return render(
        request,
        "account_login2fa.html",
        user=None,
        csrf=p.csrf,
        who=p.user.name,
        factors=have,
        next=same_site_path(next),
        error=None,
    )


@router.post("/login/2fa", response_class=HTMLResponse)
def second_step_submit(request: Request, svc: SvcDep, p: HalfSession, code: Code = "", next: Link = "/") -> Response:
    """Check the code; a right one swaps the half-session for a new full session."""
    target = same_site_path(next)
    ip = client_ip(request)
    agent = request.headers.get("user-agent")
    now = svc.clock()
    with svc.engine.begin() as conn:
        have = twofactor.factors(conn, p.user.id)
        verdict = throttle.check(conn, svc.settings, p.user.name, ip, now)
        method = None if verdict.refused else totp.verify_code(conn, svc.box, p.user.id, code)
        ended = False
        if method is not None:
            token, _ = loginflow.finish_sign_in(conn, p, method, ip, agent, now)
        elif not verdict.refused:
            ended = loginflow.second_factor_failed(conn, p, ip, "code", now)
    if method is None:
        if ended:
            return RedirectResponse("/login?next=" + quote(target, safe="/"), status_code=303)
        error = verdict.message if verdict.refused else "That code did not match."
        return render(
            request,
            "account_login2fa.html",
            status=401,
            user=None,
            csrf=p.csrf,
            who=p.user.name,
            factors=have,
            next=target,
            error=error,
        )
    response = RedirectResponse(target, status_code=303)
    loginflow.set_session_cookie(response, request, svc, token)
    return response


# ---------------------------------------------------------------- enrolment and the authenticator app


@router.get("/account/enrol", response_class=HTMLResponse)
def enrol_page(request: Request, p: FreshOrEnrolling, next: Annotated[str, Query(max_length=2000)] = "/") -> Response:
    """Your role needs two-factor sign-in: choose an authenticator app or a passkey."""
    return render(
        request,
        "account_enrol.html",
        user=None if p.stage != "full" else p.user,
        csrf=p.csrf,
        who=p.user.name,
        next=same_site_path(next),
    )


@router.get("/account/totp", response_class=HTMLResponse)
def totp_page(request: Request, svc: SvcDep, p: FreshOrEnrolling, error: Annotated[str, Query(max_length=16)] = "") -> Response:
    """The authenticator app: set up (secret and QR code of an enrolment in progress), or remove."""
    with svc.reader.connect() as conn:
        have = twofactor.factors(conn, p.user.id)
        secret = None if have.totp else totp.pending_secret(conn, svc.box, p.user.id)
    uri = totp.provisioning_uri(secret, p.user.name) if secret else None
    return render(
        request,
        "account_totp.html",
        user=None if p.stage != "full" else p.user,
        csrf=p.csrf,
        factors=have,
        secret=totp.grouped(secret) if secret else None,
        uri=uri,
        qr=totp.qr_data_uri(uri) if uri else None,
        error="That code did not match; check the phone's clock and try the next code." if error else None,
    )


@router.post("/account/totp/start")
def totp_start(svc: SvcDep, p: FreshOrEnrolling) -> Response:
    """Make a new secret for the app (shown on the next page until a code confirms it)."""
    with svc.engine.begin() as conn:
        totp.begin_enrolment(conn, svc.box, p.user.id)
    return RedirectResponse("/account/totp", status_code=303)


@router.post("/account/totp/confirm", response_class=HTMLResponse)
def totp_confirm(request: Request, svc: SvcDep, p: FreshOrEnrolling, code: Code = "") -> Response:
    """Confirm with a code from the app; shows the recovery codes once."""
    ip = client_ip(request)
    token, csrf = None, p.csrf
    with svc.engine.begin() as conn:
        codes = totp.confirm_enrolment(conn, svc.box, p.user.id, code)
        if codes is not None:
            sessions.end_for_user(conn, p.user.id, keep=p.session_id)
            accounts.write_audit(conn, p.user, "2fa.totp_enabled", p.user.name, {}, ip)
            if p.stage == sessions.ENROL:
                token, csrf = loginflow.finish_sign_in(conn, p, "enrolment", ip, request.headers.get("user-agent"), svc.clock())
    if codes is None:
        return RedirectResponse("/account/totp?error=code", status_code=303)
    user = p.user if token is not None or p.stage == "full" else None
    response = render(request, "account_recovery.html", user=user, csrf=csrf, codes=codes, left=len(codes))
    if token is not None:
        loginflow.set_session_cookie(response, request, svc, token)
    return response


@router.post("/account/totp/remove")
def totp_remove(request: Request, svc: SvcDep, p: FreshSession) -> Response:
    """Remove the authenticator app; your other sessions end."""
    with svc.engine.begin() as conn:
        if twofactor.factors(conn, p.user.id).totp:
            twofactor.clear_totp(conn, p.user.id)
            ended = sessions.end_for_user(conn, p.user.id, keep=p.session_id)
            accounts.write_audit(conn, p.user, "2fa.totp_removed", p.user.name, {"sessions_ended": ended}, client_ip(request))
    return RedirectResponse("/account?done=totp", status_code=303)


# ---------------------------------------------------------------- recovery codes and passkeys


@router.get("/account/recovery", response_class=HTMLResponse)
def recovery_page(request: Request, svc: SvcDep, p: FreshSession) -> Response:
    """How many recovery codes are left, and a button for new ones."""
    with svc.reader.connect() as conn:
        have = twofactor.factors(conn, p.user.id)
    return render(request, "account_recovery.html", codes=None, left=have.recovery_left, factors=have)


@router.post("/account/recovery", response_class=HTMLResponse)
def recovery_new(request: Request, svc: SvcDep, p: FreshSession) -> Response:
    """Ten new recovery codes, shown once; the old ones stop working."""
    with svc.engine.begin() as conn:
        if not twofactor.factors(conn, p.user.id).any:
            return RedirectResponse("/account", status_code=303)
        codes = totp.issue_recovery_codes(conn, p.user.id)
        accounts.write_audit(conn, p.user, "2fa.recovery_codes", p.user.name, {}, client_ip(request))
    return render(request, "account_recovery.html", codes=codes, left=len(codes))


@router.get("/account/passkeys", response_class=HTMLResponse)
def passkeys_page(request: Request, svc: SvcDep, p: FreshOrEnrolling) -> Response:
    """Your passkeys, a button to add one (needs JavaScript and a passkey-capable browser), and remove buttons."""
    with svc.reader.connect() as conn:
        keys = twofactor.list_passkeys(conn, p.user.id)
    return render(request, "account_passkeys.html", user=None if p.stage != "full" else p.user, csrf=p.csrf, passkeys=keys)


@router.post("/account/passkeys/{passkey_id}/remove")
def passkey_remove(request: Request, svc: SvcDep, p: FreshSession, passkey_id: int) -> Response:
    """Remove one of your passkeys (another user's is not found); your other sessions end."""
    with svc.engine.begin() as conn:
        name = twofactor.remove_passkey(conn, p.user.id, passkey_id)
        if name is not None:
            ended = sessions.end_for_user(conn, p.user.id, keep=p.session_id)
            detail = {"name": name, "sessions_ended": ended}
            accounts.write_audit(conn, p.user, "2fa.passkey_removed", p.user.name, detail, client_ip(request))
    if name is None:
        return render(request, "error.html", status=404, status_code=404, message="No such passkey.")
    return RedirectResponse("/account/passkeys", status_code=303)
