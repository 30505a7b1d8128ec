"""Sign-in after the password: a half-session for the second factor (or 2FA enrolment), then a fresh full session."""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import Request, Response

from server.auth.access import (
    SESSION_COOKIE,
    Principal,
    request_scheme,
)
from server.config.settings import Settings
from server.runtime import Services
from server.store import accounts, sessions, twofactor
from server.store.accounts import User
from server.store.db import Connection

MAX_CODE_FAILURES = 5  # wrong codes on one half-session before the password must be typed again


def start_after_password(
    conn: Connection, settings: Settings, user: User, ip: str, agent: str | None, now: float | None = None
) -> tuple[str, str, str]:
    """The session to hand out after a right password: (cookie value, CSRF token, stage).

    Only a finished sign-in is recorded as one (throttling and the owner's failed-attempts notice rely on it).
    """
    have = twofactor.factors(conn, user.id)
    if have.any:
        stage = sessions.SECOND_FACTOR
        accounts.write_audit(conn, user, "login.password", user.name, {"next": "second factor"}, ip)
    elif user.role in settings.require_2fa_roles:
        stage = sessions.ENROL  # verified_at is set: the password was just typed, so enrolment counts as fresh
        accounts.write_audit(conn, user, "login.password", user.name, {"next": "2fa enrolment"}, ip)
    else:
        stage = sessions.FULL
        _signed_in(conn, user, "password", ip, now)
    verified = None if stage == sessions.SECOND_FACTOR else time.time()
    token, csrf = sessions.create(conn, user.id, ip, agent, stage=stage, verified_at=verified)
    return token, csrf, stage


def next_url(stage: str, target: str) -> str:
    """Where the browser goes after the password step."""
    if stage == sessions.SECOND_FACTOR:
        return "/login/2fa?next=" + quote(target, safe="/")
    if stage == sessions.ENROL:
        return "/account/enrol?next=" + quote(target, safe="/")
    return target


def _signed_in(conn: Connection, user: User, method: str, ip: str, now: float | None) -> None:
    """Record a completed sign-in; the audit entry says how many failures came before it."""
    before = accounts.failed_sign_ins(conn, user.name).since_last
    accounts.record_login(conn, user.name, ip, True, now)
    detail: dict[str, object] = {"method": method}
    if before:
        detail["failed_before"] = before
    accounts.write_audit(conn, user, "login", user.name, detail, ip)


def finish_sign_in(
    conn: Connection, half: Principal, method: str, ip: str, agent: str | None, now: float | None = None
) -> tuple[str, str]:
    """Swap a half-session for a new full session (new id: nothing from before the proof is reused)."""
    if half.session_id is not None:
        sessions.end(conn, half.session_id)
    _signed_in(conn, half.user, method, ip, now)
    return sessions.create(conn, half.user.id, ip, agent, stage=sessions.FULL, verified_at=time.time())


def passkey_sign_in(conn: Connection, user: User, ip: str, agent: str | None, now: float | None = None) -> tuple[str, str]:
    """A passkey with user verification is both factors at once: straight to a full session."""
    _signed_in(conn, user, "passkey", ip, now)
    return sessions.create(conn, user.id, ip, agent, stage=sessions.FULL, verified_at=time.time())


def second_factor_failed(conn: Connection, half: Principal, ip: str, method: str, now: float | None = None) -> bool:
    """Count a wrong code (throttling and audit); True when the half-session was ended because of it."""
    accounts.record_login(conn, half.user.name, ip, False, now)
    accounts.write_audit(conn, half.user, "login.2fa_failed", half.user.name, {"method": method}, ip)
    if half.session_id is None:
        return True
    if sessions.add_failure(conn, half.session_id) >= MAX_CODE_FAILURES:
        sessions.end(conn, half.session_id)
        return True
    return False


def cookie_secure(request: Request, settings: Settings) -> bool:
    """Cookies are Secure behind HTTPS (setting secure_cookies, or an https request)."""
    return settings.secure_cookies or request_scheme(request) == "https"


def set_session_cookie(response: Response, request: Request, svc: Services, token: str) -> None:
    """The session cookie: HttpOnly, SameSite=Lax (links from notifications still work), Secure on HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(request, svc.settings),
        max_age=svc.settings.session_max_hours * 3600,
        path="/",
    )


def wrong_current_password(svc: Services, p: Principal, ip: str) -> bool:
    """A password change given a wrong current password: a wrong step-up proof (its own transaction, as the change's
    was rolled back); True when it signed the session out."""
    with svc.engine.begin() as conn:
        return stepup_failed(conn, svc.settings, p, ip, "current password")


def stepup_failed(conn: Connection, settings: Settings, p: Principal, ip: str, method: str) -> bool:
    """Count a wrong step-up proof on this session only (never the account); True when it signed the session out."""
    accounts.write_audit(conn, p.user, "stepup.failed", p.user.name, {"method": method}, ip)
    if p.session_id is None:
        return False
    if sessions.add_failure(conn, p.session_id) < settings.stepup_max_failures:
        return False
    sessions.end(conn, p.session_id)
    accounts.write_audit(conn, p.user, "session.end", p.user.name, {"why": "too many wrong step-up proofs"}, ip)
    return True
