"""Step-up: dangerous changes ask again for a second factor when the last one is older than `stepup_minutes`.

Use `require_fresh_2fa` as a dependency (or the `FreshAdmin` / `FreshOperator` aliases):

    @router.post("/api/v1/actions/{id}/run")
    def run(p: Operator, _fresh: Fresh, ...): ...

A session is fresh for `stepup_minutes` after its holder last proved who they are: a second factor,
or (for a user who has none) the password. Bearer tokens count as fresh: they are created only from
the server's command line, never from the web, so a stolen browser session cannot mint one.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from server.auth.access import Forbidden, Principal, SecondFactorPending, check_csrf, current_principal
from server.auth.policy import Policy, declare
from server.config.settings import Settings
from server.runtime import Services, get_services

VERIFY_PAGE = "/account/verify"


class StepUpRequired(Forbidden):
    """The caller must prove again who they are (second factor or password) before this change."""

    def __init__(self) -> None:
        super().__init__("this change needs a fresh sign-in proof: confirm it is you at " + VERIFY_PAGE)


class SessionRequired(Forbidden):
    """Only a signed-in browser session may do this, never an API token (answered 409)."""

    status = 409

    def __init__(self) -> None:
        super().__init__("this needs a signed-in browser session, not an API token")


def is_fresh(principal: Principal, settings: Settings, now: float | None = None) -> bool:
    """True for bearer tokens and for sessions whose last proof is younger than `stepup_minutes`."""
    if principal.kind == "token":
        return True
    if principal.verified_at is None:
        return False
    return (now or time.time()) - principal.verified_at < settings.stepup_minutes * 60


async def _fresh(request: Request, svc: Services, stages: tuple[str, ...] = ("full",), session: bool = False) -> Principal:
    """Signed in at one of `stages` (CSRF-checked on writes), a browser session when `session`, and recently
    re-verified (else StepUpRequired)."""
    principal = await current_principal(request, svc, stages=stages)
    await check_csrf(request, principal)
    if session and principal.session_id is None:
        raise SessionRequired()
    if not is_fresh(principal, svc.settings):
        raise StepUpRequired()
    return principal


@declare(Policy("viewer", fresh=True))
async def require_fresh_2fa(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
    """A dependency: signed in (CSRF-checked on writes) and recently re-verified, else StepUpRequired."""
    return await _fresh(request, svc)


def fresh(role: str) -> object:
    """A dependency: at least `role`, CSRF on writes, and a fresh second factor."""

    @declare(Policy(role, fresh=True))
    async def dependency(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
        principal = await current_principal(request, svc)
        if not principal.can(role):
            raise Forbidden(f"this needs the {role} role")
        await check_csrf(request, principal)
        if not is_fresh(principal, svc.settings):
            raise StepUpRequired()
        return principal

    return Depends(dependency)


Fresh = Annotated[Principal, Depends(require_fresh_2fa)]


@declare(Policy("viewer", fresh=True, session=True))
async def require_fresh_session(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
    """A dependency: require_fresh_2fa, and a browser session: a token (fresh by definition, made for automation)
    must never add, replace or remove its owner's second factors — that would lock the owner out."""
    return await _fresh(request, svc, session=True)


# An own second factor (TOTP, recovery codes, passkeys) removed or renewed: a fresh browser session.
FreshSession = Annotated[Principal, Depends(require_fresh_session)]
FreshOperator = Annotated[Principal, fresh("operator")]
FreshAdmin = Annotated[Principal, fresh("admin")]


def same_site_path(target: str | None, fallback: str = "/") -> str:
    """A local path to return to (absolute URLs are reduced to their path only when same-site)."""
    if not target:
        return fallback
    parts = urlsplit(target)
    path = parts.path + ("?" + parts.query if parts.query else "")
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return fallback
    return path


def _return_to(request: Request) -> str:
    if request.method == "GET":
        return same_site_path(str(request.url.path) + ("?" + request.url.query if request.url.query else ""))
    referer = request.headers.get("referer", "")
    host = request.headers.get("host", "")
    if referer and urlsplit(referer).netloc == host:
        return same_site_path(referer, "/account")
    return "/account"


def install_handlers(app: FastAPI) -> None:
    """Pages go to the verify page or the 2FA step; the JSON API answers 403 / 401 with a hint."""

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/") or request.url.path == "/metrics"

    @app.exception_handler(StepUpRequired)
    async def _stepup(request: Request, exc: StepUpRequired) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": str(exc), "stepup": VERIFY_PAGE}, status_code=403)
        return RedirectResponse(VERIFY_PAGE + "?next=" + quote(_return_to(request), safe="/"), status_code=303)

    @app.exception_handler(SecondFactorPending)
    async def _pending(request: Request, exc: SecondFactorPending) -> Response:
        if wants_json(request):
            return JSONResponse({"detail": "sign-in not finished: second factor due"}, status_code=401)
        page = "/login/2fa" if exc.stage == "2fa" else "/account/enrol"
        return RedirectResponse(page + "?next=" + quote(_return_to(request), safe="/"), status_code=303)


@declare(Policy("viewer", fresh=True, stages=("full", "enrol"), session=True))
async def _fresh_or_enrolling(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
    return await _fresh(request, svc, ("full", "enrol"), session=True)


# Setting up a second factor: allowed to a full session, and to the half-session of a user who must enrol; never
# to an API token.
FreshOrEnrolling = Annotated[Principal, Depends(_fresh_or_enrolling)]
