"""JSON API of one's own account: sessions, password, step-up, TOTP, recovery codes, passkeys, passkey sign-in."""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from server.auth import loginflow, notice, passkeys, throttle, totp
from server.auth.access import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Principal, Viewer, client_ip
from server.auth.passwords import UserError
from server.auth.policy import Policy, declare
from server.auth.principal import from_session
from server.auth.stepup import FreshOrEnrolling, FreshSession, SessionRequired, is_fresh, same_site_path
from server.runtime import Services, get_services
from server.services import users as usermgmt
from server.store import accounts, sessions, twofactor

router = APIRouter(tags=["account"])
SvcDep = Annotated[Services, Depends(get_services)]
MAX_CREDENTIAL_BYTES = 64 * 1024


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PasswordChange(_Body):
    """Your current password and the new one."""

    current: str = Field(min_length=1, max_length=1024)
    new: str = Field(min_length=10, max_length=1024)


class Verify(_Body):
    """A second factor (TOTP or recovery code), or the password if you have no second factor."""

    code: str | None = Field(default=None, max_length=64)
    password: str | None = Field(default=None, max_length=1024)


class Code(_Body):
    """A code from the authenticator app."""

    code: str = Field(min_length=1, max_length=64)


class NewPasskey(_Body):
    """The browser's answer to navigator.credentials.create(), and a name for the passkey."""

    credential: dict[str, Any]
    name: str = Field(default="passkey", max_length=64)


class PasskeyAssertion(_Body):
    """The browser's answer to navigator.credentials.get(), and where to go afterwards."""

    credential: dict[str, Any]
    next: str = Field(default="/", max_length=2000)


def _agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


def _checked(credential: dict[str, Any]) -> dict[str, Any]:
    if len(json.dumps(credential)) > MAX_CREDENTIAL_BYTES:
        raise HTTPException(413, "credential too large")
    return credential


def _session_only(p: Principal) -> str:
    if p.session_id is None:
        raise SessionRequired()
    return p.session_id


@router.get("/api/v1/account")
def account(svc: SvcDep, p: Viewer) -> dict[str, Any]:
    """Who you are, your second factors, and whether your last proof is fresh enough for sensitive changes."""
    with svc.reader.connect() as conn:
        have = twofactor.factors(conn, p.user.id)
    return {
        "id": p.user.id,
        "name": p.user.name,
        "role": p.user.role,
        "totp": have.totp,
        "passkeys": have.passkeys,
        "recovery_codes_left": have.recovery_left,
        "fresh": is_fresh(p, svc.settings),
        "stepup_minutes": svc.settings.stepup_minutes,
        "failed_sign_ins": notice.as_json(notice.failed_sign_ins(svc.reader, p.name)),
    }


@router.get("/api/v1/account/sessions")
def list_sessions(svc: SvcDep, p: Viewer) -> dict[str, Any]:
    """Your signed-in sessions on every device (`current` marks this one)."""
    with svc.reader.connect() as conn:
        return {"items": sessions.list_for_user(conn, p.user.id, p.session_id)}


@router.delete("/api/v1/account/sessions/{session_id}", status_code=204)
def end_session(svc: SvcDep, p: Viewer, request: Request, session_id: str) -> None:
    """Sign out one of your sessions (by its `id` from the list); other users' sessions are not found."""
    with svc.engine.begin() as conn:
        if not sessions.end_by_public_id(conn, p.user.id, session_id[:64]):
            raise HTTPException(404, "no such session")
        accounts.write_audit(conn, p.user, "session.end", p.user.name, {"session": session_id[:20]}, client_ip(request))


@router.post("/api/v1/account/sessions/end-others")
def end_other_sessions(svc: SvcDep, p: Viewer, request: Request) -> dict[str, int]:
    """Sign out everywhere except here."""
    with svc.engine.begin() as conn:
        ended = sessions.end_for_user(conn, p.user.id, keep=p.session_id)
        accounts.write_audit(conn, p.user, "session.end_others", p.user.name, {"ended": ended}, client_ip(request))
    return {"ended": ended}


@router.post("/api/v1/account/password")
def change_password(
    svc: SvcDep, p: FreshSession, request: Request, response: Response, body: PasswordChange
) -> dict[str, Any]:
    """Change your password: every session of yours ends; this browser gets a new one. A browser session only (a
    token cannot change its owner's password); a wrong current password counts as a wrong step-up proof."""
    ip = client_ip(request)

    def work() -> tuple[str, str] | None:
        with svc.engine.begin() as conn:
            usermgmt.change_password(conn, p.user, ip, body.current, body.new)
            if p.session_id is None:
                return None
            return sessions.create(conn, p.user.id, ip, _agent(request), verified_at=p.verified_at)

    try:
        fresh = work()
    except usermgmt.WrongPassword as exc:
        if loginflow.wrong_current_password(svc, p, ip):
            raise HTTPException(401, "too many wrong proofs: this session was signed out; sign in again") from None
        raise HTTPException(422, str(exc)) from None
    except UserError as exc:
        raise HTTPException(422, str(exc)) from None
    if fresh is not None:
        loginflow.set_session_cookie(response, request, svc, fresh[0])
    return {"changed": True, "csrf": fresh[1] if fresh else None}


@router.post("/api/v1/account/verify")
def verify(svc: SvcDep, p: Viewer, request: Request, body: Verify) -> dict[str, Any]:
    """Step-up: prove it is you again (TOTP or recovery code; the password only if you have no second factor)."""
    session_id = _session_only(p)
    ip = client_ip(request)
    with svc.engine.begin() as conn:
        have = twofactor.factors(conn, p.user.id)
        method = None
        if have.any and body.code:
            method = totp.verify_code(conn, svc.box, p.user.id, body.code)
        elif not have.any and body.password:
            method = "password" if usermgmt.password_matches(conn, p.user.id, body.password) else None
        ended = False
        if method is None:
            ended = loginflow.stepup_failed(conn, svc.settings, p, ip, "code" if have.any else "password")
        else:
            sessions.mark_verified(conn, session_id)
            accounts.write_audit(conn, p.user, "stepup", p.user.name, {"method": method}, ip)
    if ended:
        raise HTTPException(401, "too many wrong proofs: this session was signed out; sign in again")
    if method is None:
        raise HTTPException(403, "that did not match" + ("" if have.any else "; give your password"))
    return {"verified": method}


# ---------------------------------------------------------------- TOTP and recovery codes


def _finish_enrolment(svc: Services, request: Request, response: Response, p: Principal) -> None:
    if p.stage != sessions.ENROL:
        return
    with svc.engine.begin() as conn:
        token, _ = loginflow.finish_sign_in(conn, p, "enrolment", client_ip(request), _agent(request), svc.clock())
    loginflow.set_session_cookie(response, request, svc, token)


@router.post("/api/v1/account/totp")
def begin_totp(svc: SvcDep, p: FreshOrEnrolling) -> dict[str, str]:
    """Start setting up an authenticator app: the secret and otpauth:// link (confirm with a code next).

    A browser session only: a stolen API token must not be able to put a second factor on its owner (a lock-out)."""
    with svc.engine.begin() as conn:
        secret = totp.begin_enrolment(conn, svc.box, p.user.id)
    return {"secret": secret, "uri": totp.provisioning_uri(secret, p.user.name)}


@router.post("/api/v1/account/totp/confirm")
def confirm_totp(svc: SvcDep, p: FreshOrEnrolling, request: Request, response: Response, body: Code) -> dict[str, Any]:
    """Finish the setup with a code from the app; answers ten recovery codes, shown only now (browser session only)."""
    ip = client_ip(request)
    with svc.engine.begin() as conn:
        codes = totp.confirm_enrolment(conn, svc.box, p.user.id, body.code)
        if codes is not None:
            sessions.end_for_user(conn, p.user.id, keep=p.session_id)
            accounts.write_audit(conn, p.user, "2fa.totp_enabled", p.user.name, {}, ip)
    if codes is None:
        raise HTTPException(422, "that code does not match; check the phone's clock and try the next code")
    _finish_enrolment(svc, request, response, p)
    return {"recovery_codes": codes}


@router.delete("/api/v1/account/totp", status_code=204)
def remove_totp(svc: SvcDep, p: FreshSession, request: Request) -> None:
    """Remove the authenticator app; your other sessions end (browser session only)."""
    with svc.engine.begin() as conn:
        if not twofactor.factors(conn, p.user.id).totp:
            raise HTTPException(404, "no authenticator app is set up")
        twofactor.clear_totp(conn, p.user.id)
        ended = sessions.end_for_user(conn, p.user.id, keep=p.session_id)
        accounts.write_audit(conn, p.user, "2fa.totp_removed", p.user.name, {"sessions_ended": ended}, client_ip(request))


@router.post("/api/v1/account/recovery-codes")
def new_recovery_codes(svc: SvcDep, p: FreshSession, request: Request) -> dict[str, Any]:
    """Replace your recovery codes with ten new ones (the old ones stop working; browser session only)."""
    with svc.engine.begin() as conn:
        if not twofactor.factors(conn, p.user.id).any:
            raise HTTPException(409, "set up an authenticator app or a passkey first")
        codes = totp.issue_recovery_codes(conn, p.user.id)
        accounts.write_audit(conn, p.user, "2fa.recovery_codes", p.user.name, {}, client_ip(request))
    return {"recovery_codes": codes}


# ---------------------------------------------------------------- passkeys


@router.get("/api/v1/account/passkeys")
def list_passkeys(svc: SvcDep, p: Viewer) -> dict[str, Any]:
    """Your passkeys (names and dates only)."""
    with svc.reader.connect() as conn:
        return {"items": twofactor.list_passkeys(conn, p.user.id)}


@router.post("/api/v1/account/passkeys/options")
def passkey_registration_options(svc: SvcDep, p: FreshOrEnrolling, request: Request) -> dict[str, Any]:
    """Options for navigator.credentials.create() (from a signed-in browser)."""
    session_id = _session_only(p)
    with svc.engine.begin() as conn:
        return passkeys.registration_options(conn, request, svc.settings, p.user, session_id)


@router.post("/api/v1/account/passkeys", status_code=201)
def add_passkey(svc: SvcDep, p: FreshOrEnrolling, request: Request, response: Response, body: NewPasskey) -> dict[str, Any]:
    """Register the passkey the browser just made; the first one also brings recovery codes (shown once)."""
    session_id = _session_only(p)
    ip = client_ip(request)
    try:
        with svc.engine.begin() as conn:
            had = twofactor.factors(conn, p.user.id)
            key_id = passkeys.register(conn, request, svc.settings, p.user, session_id, _checked(body.credential), body.name)
            codes = totp.issue_recovery_codes(conn, p.user.id) if had.recovery_left == 0 else None
            sessions.end_for_user(conn, p.user.id, keep=session_id)
            accounts.write_audit(conn, p.user, "2fa.passkey_added", p.user.name, {"name": body.name}, ip)
    except passkeys.PasskeyError as exc:
        raise HTTPException(422, str(exc)) from None
    _finish_enrolment(svc, request, response, p)
    return {"id": key_id, "recovery_codes": codes, "redirect": "/" if p.stage == sessions.ENROL else "/account/passkeys"}


@router.delete("/api/v1/account/passkeys/{passkey_id}", status_code=204)
def remove_passkey(svc: SvcDep, p: FreshSession, request: Request, passkey_id: int) -> None:
    """Remove one of your passkeys (another user's passkey is not found); your other sessions end."""
    with svc.engine.begin() as conn:
        name = twofactor.remove_passkey(conn, p.user.id, passkey_id)
        if name is None:
            raise HTTPException(404, "no such passkey")
        ended = sessions.end_for_user(conn, p.user.id, keep=p.session_id)
        detail = {"name": name, "sessions_ended": ended}
        accounts.write_audit(conn, p.user, "2fa.passkey_removed", p.user.name, detail, client_ip(request))


# ---------------------------------------------------------------- passkey sign-in, second factor and step-up


@declare(Policy(None, csrf=False, why="passkey ceremonies: the sign-in form's token, or the session's CSRF token"))
async def _ceremony(request: Request, svc: SvcDep) -> tuple[str, str, Principal | None]:
    """(purpose, binding, principal) from the caller's cookies; the X-CSRF-Token header must match."""
    sent = request.headers.get("x-csrf-token", "")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        s = svc.settings

        def look() -> Any:
            with svc.engine.begin() as conn:
                return sessions.load(conn, cookie, s.session_idle_minutes * 60, s.session_max_hours * 3600)

        found = await run_in_threadpool(look)
        if found is not None and found.stage in (sessions.FULL, sessions.SECOND_FACTOR):
            if not sent or not hmac.compare_digest(sent.encode(), found.csrf.encode()):
                raise HTTPException(403, "missing or wrong CSRF token; reload the page")
            principal = from_session(found)
            return ("stepup" if found.stage == sessions.FULL else "second"), found.id, principal
    login_cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not login_cookie or not sent or not hmac.compare_digest(sent.encode(), login_cookie.encode()):
        raise HTTPException(403, "your sign-in form expired; reload the page")
    return "login", passkeys.login_binding(login_cookie), None


Ceremony = Annotated[tuple[str, str, Principal | None], Depends(_ceremony)]


@router.post("/api/v1/auth/passkey/options")
async def passkey_options(svc: SvcDep, request: Request, ceremony: Ceremony) -> dict[str, Any]:
    """Options for navigator.credentials.get(): sign-in, the second step of a sign-in, or step-up."""
    purpose, binding, principal = ceremony

    def work() -> dict[str, Any]:
        with svc.engine.begin() as conn:
            user = principal.user if principal else None
            return passkeys.authentication_options(conn, request, svc.settings, purpose, binding, user)

    return await run_in_threadpool(work)


@router.post("/api/v1/auth/passkey")
async def passkey_answer(
    svc: SvcDep, request: Request, response: Response, ceremony: Ceremony, body: PasskeyAssertion
) -> dict[str, Any]:
    """Check the passkey: signs in (new session), finishes a sign-in, or marks this session fresh."""
    purpose, binding, principal = ceremony
    ip = client_ip(request)
    target = same_site_path(body.next)

    def work() -> tuple[str | None, str | None]:
        now = svc.clock()
        with svc.engine.begin() as conn:
            # A passkey sign-in names no account up front: only the address is throttled, so nobody can lock a user out.
            name = principal.user.name if principal else ""
            if purpose != "stepup":  # step-up failures count against the session only (below)
                verdict = throttle.check(conn, svc.settings, name, ip, now) if principal else throttle.check_address(
                    conn, svc.settings, ip, now
                )
                if verdict.refused:
                    return None, verdict.message
            try:
                expected = principal.user if principal else None
                credential = _checked(body.credential)
                user = passkeys.authenticate(conn, request, svc.settings, purpose, binding, credential, expected)
            except passkeys.PasskeyError as exc:
                who = principal.user if principal else None
                if purpose == "stepup" and principal is not None:
                    loginflow.stepup_failed(conn, svc.settings, principal, ip, "passkey")
                else:
                    accounts.record_login(conn, name, ip, False, now)
                accounts.write_audit(conn, who, "login.passkey_failed", name, {"why": str(exc)}, ip)
                return None, str(exc)
            if purpose == "login":
                return loginflow.passkey_sign_in(conn, user, ip, _agent(request), now)[0], None
            if principal is None:
                return None, "sign in again"
            if purpose == "second":
                return loginflow.finish_sign_in(conn, principal, "passkey", ip, _agent(request), now)[0], None
            sessions.mark_verified(conn, binding)
            accounts.write_audit(conn, user, "stepup", user.name, {"method": "passkey"}, ip)
            return None, None

    token, error = await run_in_threadpool(work)
    if error is not None:
        raise HTTPException(403, error)
    if token is not None:
        loginflow.set_session_cookie(response, request, svc, token)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
    return {"redirect": target}
