"""create_app(settings): the FastAPI application, its lifespan (pipeline start/stop) and error handling."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import web
from server.actions import runner as actions_runner
from server.auth import stepup
from server.auth.access import Forbidden, NotAuthenticated, request_scheme
from server.auth.passwords import dummy_hash
from server.config.inventory import FieldError, error_list
from server.config.loader import LoadedConfig
from server.config.settings import Settings
from server.keys.rotation import check_key
from server.keys.secretbox import KEY_CHANGED, SecretBox, SecretsUnavailable
from server.logsafe import CONTROL_IN_JSON, visible_data
from server.polling import pipeline
from server.runtime import Services
from server.services import directories, discovery_schedule
from server.services.errors import ServiceError
from server.services.terminal.manager import manager as terminal_manager
from server.store import filemodes
from server.store.db import DBAPIError, make_engine, migrate
from server.store.space import FULL_MESSAGE, Storage, is_full_error
from server.web import guards as app_guards
from server.web.limits import BodyLimitMiddleware, BodyLimits

log = logging.getLogger("pocketnoc")
WEB = web.ROOT
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/metrics"


def _not_json_body(request: Request, errors: list[FieldError]) -> bool:
    """A refused body that was not sent as JSON (no or another Content-Type): 415 says what to do, not 'valid dictionary'."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    json_like = kind == "application/json" or kind.endswith("+json")
    return request.method in ("POST", "PUT", "PATCH") and not json_like and any(e["loc"][:1] == ["body"] for e in errors)


def _install_handlers(app: FastAPI) -> None:
    @app.exception_handler(NotAuthenticated)
    async def _unauth(request: Request, _exc: NotAuthenticated) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "not signed in"}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        from urllib.parse import quote

        return RedirectResponse("/login?next=" + quote(target, safe="/"), status_code=303)

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> Response:
        status = exc.status
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=status)
        from server.web.pages.common import render_error

        return render_error(request, status, str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))
        from server.web.pages.common import render_error

        return render_error(request, exc.status_code, str(exc.detail))

    @app.exception_handler(SecretsUnavailable)
    async def _key_changed(request: Request, _exc: SecretsUnavailable) -> Response:
        """A key rotated under a running server: routes that unseal answer 503 with why, not 500 and a traceback."""
        log.warning("%s %s: %s", request.method, request.url.path, KEY_CHANGED)
        if _wants_json(request):
            return JSONResponse({"detail": KEY_CHANGED}, status_code=503)
        from server.web.pages.common import render_error

        return render_error(request, 503, "The secrets key changed (pocketnoc secrets rotate); restart pocketnoc.")

    @app.exception_handler(ServiceError)
    async def _refused(request: Request, exc: ServiceError) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status)
        from server.web.pages.common import render_error

        return render_error(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = error_list(exc.errors())  # patterns in words, not the raw regex; `loc` kept for programs
        if _wants_json(request) and _not_json_body(request, errors):
            return JSONResponse({"detail": "send JSON with Content-Type: application/json"}, status_code=415)
        if _wants_json(request):
            return JSONResponse({"detail": errors}, status_code=422)
        from server.web.pages.common import render_error

        return render_error(request, 400, "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors))

    @app.exception_handler(DBAPIError)
    async def _storage(request: Request, exc: DBAPIError) -> Response:
        if not is_full_error(exc):
            raise exc  # any other database error is a crash (below)
        svc = getattr(request.app.state, "services", None)
        if svc is not None and svc.storage is not None:
            svc.storage.hit(exc)
        # A change that cannot be saved now: say why; reading goes on working.
        if _wants_json(request):
            return JSONResponse({"detail": FULL_MESSAGE + "; this change could not be saved"}, status_code=503)
        from server.web.pages.common import render_error

        return render_error(request, 503, FULL_MESSAGE + "; this change could not be saved. Try again when there is room.")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if _wants_json(request):
            return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)
        from server.web.pages.common import render_error

        return render_error(request, 500, "Something went wrong on the server; the error is in its log.")


class VisibleJSONResponse(JSONResponse):
    """Every API answer: device text with control characters is sent as escaped data (the text \\x1b), never as a
    JSON \\u001b that a `jq -r` would turn back into a raw ESC (rows stored before the store made them visible)."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        if CONTROL_IN_JSON.search(text):
            text = json.dumps(visible_data(content), ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))
        return text.encode("utf-8")


def create_app(settings: Settings, config: LoadedConfig | None = None, poll: bool = True) -> FastAPI:
    """Build an app on its own database; `poll=False` serves without running checks (tests, CLI)."""
    filemodes.prepare(settings.data_dir, settings.db_url)
    for problem in filemodes.loose_files(settings.data_dir, settings.db_url, settings.key_file):
        log.warning("%s", problem)  # warned, not refused: the admin may share them on purpose
    engine = make_engine(settings.db_url)
    reader = make_engine(settings.db_url, immediate=False) if settings.db_url.startswith("sqlite") else engine
    svc = Services(settings=settings, engine=engine, reader=reader, box=SecretBox.from_file(settings.key_file),
                   storage=Storage(settings.data_dir, settings.storage_reserve_mb << 20))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        if svc.storage is not None:
            svc.storage.make_reserve()
        check_key(engine, svc.box)  # a wrong key fails closed here, before anything reads secrets
        dummy_hash()  # the first sign-in with an unknown name costs what every other one does
        actions_runner.install(svc)  # an invalid action catalog stops the start, with file:line errors
        discovery_schedule.install(svc)
        directories.sync_file(svc)  # so does an invalid directories file
        terminal_manager(svc).start()  # recordings past terminal_retention_days are pruned even if no terminal opens
        if config is not None:
            pipeline.sync_inventory(svc, config)
        if poll:
            pipeline.start(svc)
            await pipeline.start_traps(svc)
            discovery_schedule.start(svc)
        try:
            yield
        finally:
            await discovery_schedule.stop(svc)
            await actions_runner.shutdown(svc)
            if svc.terminals is not None:
                await svc.terminals.shutdown()  # every open terminal is ended, recorded and audited
            await pipeline.stop(svc)
            engine.dispose()
            if reader is not engine:
                reader.dispose()

    app = FastAPI(
        title="pocketnoc",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        default_response_class=VisibleJSONResponse,
    )
    app.state.services = svc
    _install_handlers(app)
    stepup.install_handlers(app)
    app_guards.install(app)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
        if settings.secure_cookies or request_scheme(request) == "https":
            response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
        if not request.url.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        elif "v" in request.query_params:  # asset URLs carry a content hash: they never change
            response.headers.setdefault("Cache-Control", "public, max-age=31536000, immutable")
        return response

    app.add_middleware(GZipMiddleware, minimum_size=500)  # phones on slow links: pages shrink ~5x
    # Added last, so outermost: a body is measured before any handler, sign-in check or parser sees it.
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits(settings.max_body_bytes, settings.max_json_depth))

    from server.web import live, terminal_ws
    from server.web.api import account as api_account
    from server.web.api import actions as api_actions
    from server.web.api import alerts as api_alerts
    from server.web.api import devices as api
    from server.web.api import directory as api_directory
    from server.web.api import discovery as api_discovery
    from server.web.api import hostkeys as api_hostkeys
    from server.web.api import notify as api_notify
    from server.web.api import users as api_users
    from server.web.api import workers as api_workers
    from server.web.pages import account as pages_account
    from server.web.pages import actions as pages_actions
    from server.web.pages import alerts as pages_alerts
    from server.web.pages import common as pages
    from server.web.pages import directory as pages_directory
    from server.web.pages import directory_admin as pages_directory_admin
    from server.web.pages import discovery as pages_discovery
    from server.web.pages import imports as pages_imports
    from server.web.pages import inventory as pages_inventory
    from server.web.pages import notify as pages_notify
    from server.web.pages import phone as pages_app
    from server.web.pages import terminal as pages_terminal
    from server.web.pages import twofactor as pages_2fa
    from server.web.pages import users as pages_admin_users
    from server.web.pages import workers as pages_workers

    # The sign-in form and the phone's own pages first: FastAPI builds a router's routes on the first request that
    # reaches it, walking the routers in this order, so the first page after a start no longer builds them all.
    # No route's own path is matched by a route of the routers moved ahead of it (checked for all 191 method+path
    # pairs when this order was set), so every request reaches the same route as before.
    for module in (
        pages, pages_app, api, api_hostkeys, api_alerts, pages_alerts,
        api_account, api_users, pages_account, pages_2fa, pages_admin_users,
        api_actions, pages_actions, api_notify, pages_notify, api_workers, pages_workers, api_discovery, pages_discovery,
        api_directory, pages_directory, pages_directory_admin,
        pages_inventory, pages_imports, live, pages_terminal, terminal_ws,
    ):  # fmt: skip
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")
    return app
