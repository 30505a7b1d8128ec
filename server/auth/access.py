"""Authentication and authorization: passwords, sessions, tokens, CSRF, roles, login throttling."""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from server.auth import passwords, principal, proxies, throttle
from server.auth.policy import Policy, declare
from server.auth.principal import Principal
from server.config.settings import Settings
from server.runtime import Services, get_services
from server.store import accounts
from server.store.accounts import User
from server.store.db import Connection, DBAPIError
from server.store.space import is_full_error

__all__ = ["Principal"]

SESSION_COOKIE = "pn_session"
LOGIN_CSRF_COOKIE = "pn_login_csrf"  # the sign-in form's double-submit CSRF cookie (pages and passkey sign-in)


class NotAuthenticated(Exception):
    """No valid session or token."""


class SecondFactorPending(NotAuthenticated):
    """A half-session: the password was right, but a second factor (or 2FA enrolment) is still due."""

    def __init__(self, stage: str) -> None:
        super().__init__(stage)
        self.stage = stage


class Forbidden(Exception):
    """Signed in, but the role or CSRF token does not allow this."""

    status = 403  # the HTTP status the app answers with (SessionRequired: 409)


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The password step: the user when it was right, or why not (`throttled`: refused before checking)."""

    user: User | None
    throttled: throttle.Verdict | None = None


def login(conn: Connection, settings: Settings, name: str, password: str, ip: str, now: float) -> LoginResult:
    """Check a password with throttling; the same answer whether or not the user exists.

    A wrong password is counted here; a right one is recorded when the sign-in completes (loginflow).
    """
    name = name[:64]
    verdict = throttle.check(conn, settings, name, ip, now)
    if verdict.refused:
        return LoginResult(None, verdict)
    found = accounts.get_user_by_name(conn, name)
    stored = found[1] if found else passwords.dummy_hash()
    ok = passwords.matches(stored, password)
    if not (ok and found and not found[0].disabled):
        accounts.record_login(conn, name, ip, False, now)
        return LoginResult(None)
    if passwords.hasher.check_needs_rehash(stored):
        accounts.set_password_hash(conn, found[0].id, passwords.hash_password(password))
    return LoginResult(found[0])


def _trusted(request: Request) -> tuple[proxies.Network, ...]:
    svc: Services = request.app.state.services
    return proxies.parse_networks(svc.settings.trusted_proxies)


def client_ip(request: Request) -> str:
    """The client address: the peer, or what trusted proxies (setting trusted_proxies) say in X-Forwarded-For."""
    peer = request.client.host if request.client else "unknown"
    return proxies.client_address(peer, request.headers.get("x-forwarded-for"), _trusted(request))


def request_scheme(request: Request) -> str:
    """http or https as the browser sees it (X-Forwarded-Proto counts only from a trusted proxy)."""
    peer = request.client.host if request.client else "unknown"
    return proxies.forwarded_scheme(peer, request.headers.get("x-forwarded-proto"), request.url.scheme, _trusted(request))


def caller_or_none(request: Request, svc: Services) -> Principal | None:
    """The signed-in caller if the request carries a valid session or token, else None (never raises: for public routes
    that show more to people who are signed in)."""
    try:
        return _lookup(request, svc)
    except Exception:  # a database that is down or full must not turn a health probe into a 500
        return None


def _lookup(request: Request, svc: Services) -> Principal | None:
    s = svc.settings
    storage = svc.storage

    def find(conn: Connection, seen: dict[str, float] | None) -> Principal | None:
        """The caller from this connection; `seen` (touches kept in memory) means read only."""
        return principal.resolve(
            conn,
            request.headers.get("authorization", ""),
            request.cookies.get(SESSION_COOKIE),
            s.session_idle_minutes * 60,
            s.session_max_hours * 3600,
            seen,
        )

    if storage is not None and storage.full:  # read only: the session or token touch is kept in memory
        with svc.reader.connect() as conn:
            found = find(conn, storage.session_touches)
        if found is not None:
            storage.defer(found.session_id, found.token_hash, time.time())
        return found
    try:
        with svc.engine.begin() as conn:
            return find(conn, None)
    except DBAPIError as exc:
        if storage is None or not is_full_error(exc):
            raise
        storage.hit(exc)
        return _lookup(request, svc)


async def current_principal(request: Request, svc: Services, stages: tuple[str, ...] = ("full",)) -> Principal:
    """The caller, from a bearer token or the session cookie (looked up off the event loop).

    Half-sessions (second factor or 2FA enrolment due) count only where `stages` lets them.
    """
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal) and cached.stage in stages:
        return cached
    found = await run_in_threadpool(_lookup, request, svc)
    if found is None:
        raise NotAuthenticated()
    if found.stage not in stages:
        raise SecondFactorPending(found.stage)
    if found.stage == "full":
        request.state.principal = found  # pages show a half-session as not signed in
    return found


async def check_csrf(request: Request, principal: Principal) -> None:
    """Session callers must echo their CSRF token on writes (header X-CSRF-Token or form field csrf_token)."""
    if request.method in ("GET", "HEAD", "OPTIONS") or principal.csrf is None:
        return
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise Forbidden("missing or wrong CSRF token; reload the page and try again")


def require(role: str) -> object:
    """A dependency: the caller must be signed in with at least `role` (and pass CSRF on writes)."""

    @declare(Policy(role))
    async def dependency(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
        principal = await current_principal(request, svc)
        if not principal.can(role):
            raise Forbidden(f"this needs the {role} role")
        await check_csrf(request, principal)
        return principal

    return Depends(dependency)


Viewer = Annotated[Principal, require("viewer")]
Operator = Annotated[Principal, require("operator")]
Admin = Annotated[Principal, require("admin")]
