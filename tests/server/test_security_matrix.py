"""The authorization matrix, generated from the app's own route table: every route and method x every kind of caller.

Each route declares its policy once (server/auth/policy.py: the gate it depends on). A route without one fails here;
a route whose answers do not match its declaration fails here, with the route, the caller and the answer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient
from httpx import Response
from starlette.routing import Mount, Route

from server.auth.access import SESSION_COOKIE, Admin, Viewer
from server.auth.grants import GRANTS
from server.auth.policy import Policy, policies_of, public
from server.store import accounts, grants, sessions
from tests.server.conftest import AppEnv

RANK = {"viewer": 0, "operator": 1, "admin": 2}
WRITES = ("POST", "PUT", "PATCH", "DELETE")
# Not APIRoutes, so they cannot carry a gate: the OpenAPI document (no data) and the static files.
FRAMEWORK = {("Route", "/api/v1/openapi.json"), ("Mount", "/static")}
# WebSocket routes guard themselves (no dependency declares them): each names the tests that check its guard.
SOCKETS = {"/terminal/ws": "tests/server/test_terminal_ws.py: same origin, a session cookie and a one-time ticket"}
ROLE_REFUSAL = re.compile(r"this needs the \w+ role")
GRANT_REFUSAL = re.compile(r"this needs the \w+ permission")


@dataclass(frozen=True)
class Caller:
    """One row of the matrix: who calls, with what credential."""

    label: str
    role: str | None = None  # None: anonymous
    kind: str = "session"  # session | token
    stage: str = sessions.FULL
    fresh: bool = True
    csrf: bool = True
    grants: bool = False  # holds every named permission (server.auth.grants); only operators store them

    @property
    def account(self) -> str:
        """Which test account this caller signs in as."""
        assert self.role is not None
        return self.role + ("-granted" if self.grants else "")


CALLERS = [
    Caller("anonymous"),
    *(Caller(f"{role} {kind}", role, kind) for role in RANK for kind in ("session", "token")),
    Caller("operator session with every grant", "operator", grants=True),
    Caller("operator token with every grant", "operator", "token", grants=True),
    Caller("admin session without CSRF", "admin", csrf=False),
    Caller("admin session, last proof stale", "admin", fresh=False),
    Caller("viewer half-session (2FA due)", "viewer", stage=sessions.SECOND_FACTOR, fresh=False),
    Caller("viewer enrolling (2FA set-up due)", "viewer", stage=sessions.ENROL),
]


def _walk(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        if hasattr(route, "original_router"):
            yield from _walk(route.original_router.routes)
        else:
            yield route

# A directory action is one of the catalog's ids (its route's convertor matches nothing else).
FILLED = {"{action}": "ack", "{action:dir_action}": "unlock"}


def _fill(path: str) -> str:
    # Ids that match nothing: an allowed call must not change anything another call relies on.
    return re.sub(r"\{[^}]+\}", lambda m: FILLED.get(m.group(), "999999"), path)


def expected(policy: Policy, caller: Caller, method: str) -> str:
    """What the declaration says this caller gets."""
    if caller.role is None:
        return "signed out"
    stage = caller.stage if caller.kind == "session" else sessions.FULL
    if stage not in policy.stages:
        return "sign-in unfinished"
    assert policy.role is not None
    if RANK[caller.role] < RANK[policy.role]:
        return "role"
    if policy.grant is not None and caller.role != "admin" and not caller.grants:
        return "grant"
    if caller.kind == "session" and policy.csrf and method in WRITES and not caller.csrf:
        return "csrf"
    if caller.kind == "session" and policy.fresh and not caller.fresh:
        return "step-up"
    return "allowed"


def observed(response: Response) -> str:
    """What the app answered, in the same words."""
    status, text = response.status_code, response.text
    location = response.headers.get("location", "")
    api = response.request.url.path.startswith("/api/") or response.request.url.path == "/metrics"
    if status == 401 and api:  # pages send signed-out callers to /login; their own 401s are answers (a wrong code)
        return "sign-in unfinished" if "second factor due" in text else "signed out"
    if status == 303 and location.startswith("/login?"):
        return "signed out"
    if status == 303 and location.startswith(("/login/2fa", "/account/enrol")):
        return "sign-in unfinished"
    if (status == 303 and location.startswith("/account/verify")) or (status == 403 and "fresh sign-in proof" in text):
        return "step-up"
    if status == 403 and "CSRF" in text:
        return "csrf"
    if status == 403 and ROLE_REFUSAL.search(text):
        return "role"
    if status == 403 and GRANT_REFUSAL.search(text):
        return "grant"
    if status >= 500 and status != 503:  # 503: polling is not running in this app
        return f"error {status}"
    return "allowed"


class Matrix:
    """Credentials for every caller: tokens made once, a new session per request (a call may end its session)."""

    def __init__(self, env: AppEnv) -> None:
        self.env = env
        self.client = TestClient(env.app, follow_redirects=False)
        accounts_ = {**{role: role for role in RANK}, "operator-granted": "operator"}
        self.ids = {key: env.user(f"m-{key}", role) for key, role in accounts_.items()}
        # GETs share sessions of their own users: a write may end every session of its user (sign out everywhere).
        self.reader_ids = {key: env.user(f"r-{key}", role) for key, role in accounts_.items()}
        with env.svc.engine.begin() as conn:
            self.tokens = {key: accounts.new_token(conn, self.ids[key], "matrix") for key in accounts_}
            for user_id in (self.ids["operator-granted"], self.reader_ids["operator-granted"]):
                grants.add(conn, user_id, GRANTS, "matrix")
        self.kept: dict[Caller, tuple[str, str]] = {}

    def session(self, caller: Caller, method: str) -> tuple[str, str]:
        """A session for this caller: shared by its GETs (they change nothing), new for every write."""
        found = self.kept.get(caller) if method == "GET" else None
        if found is None:
            assert caller.role is not None
            user_id = (self.reader_ids if method == "GET" else self.ids)[caller.account]
            with self.env.svc.engine.begin() as conn:
                verified = time.time() if caller.fresh else None
                found = sessions.create(conn, user_id, "127.0.0.1", "matrix", caller.stage, verified)
            if method == "GET":
                self.kept[caller] = found
        return found

    def call(self, caller: Caller, method: str, path: str) -> Response:
        headers: dict[str, str] = {}
        if caller.role is not None and caller.kind == "token":
            headers["Authorization"] = f"Bearer {self.tokens[caller.account]}"
        elif caller.role is not None:
            cookie, csrf = self.session(caller, method)
            headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
            if caller.csrf:
                headers["X-CSRF-Token"] = csrf
        self.client.cookies.clear()
        body: dict[str, Any] = {}
        if method in ("POST", "PUT", "PATCH"):
            body = {"json": {}} if path.startswith("/api/") else {"data": {}}
        return self.client.request(method, path, headers=headers, **body)


@pytest.fixture
def routes(app_env: AppEnv) -> list[APIRoute]:
    found = []
    for route in _walk(app_env.app.routes):
        if isinstance(route, APIRoute):
            found.append(route)
        elif isinstance(route, APIWebSocketRoute):
            assert route.path in SOCKETS, f"a WebSocket route without a guard named in SOCKETS: {route.path}"
        else:
            assert isinstance(route, Route | Mount) and (type(route).__name__, route.path) in FRAMEWORK, route
    return found


def test_every_route_declares_exactly_one_policy(routes: list[APIRoute]) -> None:
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in routes if not policies_of(r)]
    assert not undeclared, "routes without a declared policy (use a gate from server/auth or public(why)):\n" + "\n".join(
        undeclared
    )
    ambiguous = [f"{sorted(r.methods)} {r.path}: {policies_of(r)}" for r in routes if len(policies_of(r)) > 1]
    assert not ambiguous, ambiguous
    assert len(routes) >= 100


def _is_stream(route: APIRoute) -> bool:
    response_class = getattr(route.response_class, "value", route.response_class)
    return "EventSource" in getattr(response_class, "__name__", "")


def test_every_route_answers_every_caller_as_its_policy_says(app_env: AppEnv, routes: list[APIRoute]) -> None:
    matrix = Matrix(app_env)
    problems: list[str] = []
    cells = 0
    for route in routes:
        (policy,) = policies_of(route)
        for method in sorted(route.methods - {"HEAD"}):
            path = _fill(route.path)
            for caller in CALLERS:
                want = "allowed" if policy.role is None else expected(policy, caller, method)
                if want == "allowed" and _is_stream(route):
                    continue  # a live stream that lets the caller in never ends; its refusals are checked
                if caller.label == "admin session without CSRF" and method not in WRITES:
                    continue
                got = observed(matrix.call(caller, method, path))
                cells += 1
                if policy.role is None and got.startswith("error"):
                    problems.append(f"{method} {route.path} as {caller.label}: {got} (public: {policy.why})")
                elif policy.role is not None and got != want:
                    problems.append(f"{method} {route.path} as {caller.label}: {got}, declared {want}")
    assert not problems, f"{len(problems)} of {cells} cells differ from the declared policy:\n" + "\n".join(problems)
    assert cells > 1000


def test_a_route_is_seen_without_a_policy_and_with_one() -> None:
    router = APIRouter()

    @router.get("/forgotten")
    def forgotten() -> None: ...

    @router.get("/mine")
    def mine(_p: Viewer) -> None: ...

    @router.delete("/theirs")
    def theirs(_p: Admin) -> None: ...

    @router.get("/open", dependencies=[public("a test")])
    def open_route() -> None: ...

    found = {r.path: policies_of(r) for r in router.routes if isinstance(r, APIRoute)}
    assert found == {
        "/forgotten": set(),
        "/mine": {Policy("viewer")},
        "/theirs": {Policy("admin")},
        "/open": {Policy(None, csrf=False, why="a test")},
    }
