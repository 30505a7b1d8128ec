"""Sign-in after the password: a half-session for the second factor (or 2FA enrolment), then a fresh full session."""

from __future__ import annotations

import time
from urllib.parse import quote

from fastapi import Request, Response

from server.auth.access import (
    MAX_FAILURES_PER_ACCOUNT,
    MAX_FAILURES_PER_ADDRESS,
    SESSION_COOKIE,
    THROTTLE_WINDOW,
    Principal,
    request_scheme,
)
from server.config.settings import Settings
from server.runtime import Services
from server.store import accounts, sessions, twofactor
from server.store.accounts import User
from server.store.db import Connection

MAX_CODE_FAILURES = 5  # wrong codes on one half-session before the password must be typed again


def throttled(conn: Connection, name: str, ip: str) -> bool:
    """True when this account or address failed too often recently (same limits as the password step)."""
    by_user, by_ip = accounts.recent_failures(conn, name, ip, THROTTLE_WINDOW)
    return by_user >= MAX_FAILURES_PER_ACCOUNT or by_ip >= MAX_FAILURES_PER_ADDRESS


def address_throttled(conn: Connection, ip: str) -> bool:
    """True when this address failed too often recently."""
    return accounts.recent_failures(conn, "", ip, THROTTLE_WINDOW)[1] >= MAX_FAILURES_PER_ADDRESS


def start_after_password(conn: Connection, settings: Settings, user: User, ip: str, agent: str | None) -> tuple[str, str, str]:
    """The session to hand out after a right password: (cookie value, CSRF token, stage)."""
    have = twofactor.factors(conn, user.id)
    if have.any:
        stage = sessions.SECOND_FACTOR
        accounts.write_audit(conn, user, "login.password", user.name, {"next": "second factor"}, ip)
    elif user.role in settings.require_2fa_roles:
        stage = sessions.ENROL  # verified_at is set: the password was just typed, so enrolment counts as fresh
        accounts.write_audit(conn, user, "login.password", user.name, {"next": "2fa enrolment"}, ip)
    else:
        stage = sessions.FULL
        accounts.write_audit(conn, user, "login", user.name, {"method": "password"}, ip)
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


def finish_sign_in(conn: Connection, half: Principal, method: str, ip: str, agent: str | None) -> tuple[str, str]:
    """Swap a half-session for a new full session (new id: nothing from before the proof is reused)."""
    if half.session_id is not None:
        sessions.end(conn, half.session_id)
    accounts.record_login(conn, half.user.name, ip, True)
    accounts.write_audit(conn, half.user, "login", half.user.name, {"method": method}, ip)
    return sessions.create(conn, half.user.id, ip, agent, stage=sessions.FULL, verified_at=time.time())


def passkey_sign_in(conn: Connection, user: User, ip: str, agent: str | None) -> tuple[str, str]:
    """A passkey with user verification is both factors at once: straight to a full session."""
    accounts.record_login(conn, user.name, ip, True)
    accounts.write_audit(conn, user, "login", user.name, {"method": "passkey"}, ip)
    return sessions.create(conn, user.id, ip, agent, stage=sessions.FULL, verified_at=time.time())


def second_factor_failed(conn: Connection, half: Principal, ip: str, method: str) -> bool:
    """Count a wrong code (throttling and audit); True when the half-session was ended because of it."""
    accounts.record_login(conn, half.user.name, ip, False)
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
