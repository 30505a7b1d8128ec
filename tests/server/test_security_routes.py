"""Authorization everywhere: a role x route matrix from the OpenAPI spec, every HTML form route, CSRF, GETs that change
nothing, bodies that refuse unknown fields, security headers and templates without inline script."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from server.store import twofactor
from server.store.schema import metadata
from tests import sql
from tests.server.conftest import AppEnv, bearer, form_csrf, make_app_env, sign_in

WRITE_METHODS = ("post", "put", "patch", "delete")
TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
# The least role each state-changing API route needs. A route missing here must at least refuse viewers.
API_ROLES = {
    ("post", "/api/v1/devices"): "admin",
    ("patch", "/api/v1/devices/{device_id}"): "admin",
    ("delete", "/api/v1/devices/{device_id}"): "admin",
    ("post", "/api/v1/devices/{device_id}/poll"): "operator",
    ("post", "/api/v1/devices/{device_id}/host-keys"): "admin",
    ("delete", "/api/v1/devices/{device_id}/host-keys/{key_id}"): "admin",
    ("post", "/api/v1/users"): "admin",
    ("patch", "/api/v1/users/{user_id}"): "admin",
    ("post", "/api/v1/users/{user_id}/reset-2fa"): "admin",
    ("post", "/api/v1/rules"): "admin",
    ("put", "/api/v1/rules/{name}"): "admin",
    ("delete", "/api/v1/rules/{name}"): "admin",
    ("post", "/api/v1/rules/reload"): "admin",
    ("post", "/api/v1/alerts/{alert_id}/ack"): "operator",
    ("post", "/api/v1/alerts/{alert_id}/unack"): "operator",
    ("post", "/api/v1/alerts/{alert_id}/snooze"): "operator",
    ("post", "/api/v1/alerts/{alert_id}/notes"): "operator",
    ("post", "/api/v1/silences"): "operator",
    ("delete", "/api/v1/silences/{silence_id}"): "operator",
    ("post", "/api/v1/actions/reload"): "admin",
    ("post", "/api/v1/channels"): "admin",
    ("delete", "/api/v1/channels/{channel_id}"): "admin",
    ("post", "/api/v1/channels/{channel_id}/test"): "operator",
    ("post", "/api/v1/notify/messages/{message_id}/retry"): "admin",
    ("post", "/api/v1/notify/messages/{message_id}/discard"): "admin",
    ("post", "/api/v1/notify/reload"): "admin",
    ("delete", "/api/v1/workers/{worker_id}"): "admin",
}
# Any signed-in user: one's own account and push subscriptions, and actions (each catalog entry names its role,
# checked inside the route).
OWN_SCOPE = re.compile(r"^/api/v1/(account(/|$)|push/subscriptions|actions/\{action_id\}/(preview|run)$)")
# No session yet: the sign-in ceremonies (guarded by the sign-in form's token) and push actions (a signed token).
PUBLIC_WRITES = {("post", "/api/v1/auth/passkey/options"), ("post", "/api/v1/auth/passkey"), ("post", "/api/v1/push/action")}
FORM_ROLES = {
    "/devices/{device_id}/host-keys": "admin",
    "/devices/{device_id}/poll": "operator",
    "/admin/users": "admin",
    "/admin/users/{user_id}/role": "admin",
    "/admin/users/{user_id}/disable": "admin",
    "/admin/users/{user_id}/enable": "admin",
    "/admin/users/{user_id}/reset-2fa": "admin",
    "/alerts/{alert_id}/{action}": "operator",
    "/silences": "operator",
    "/silences/{silence_id}/delete": "operator",
    "/admin/devices": "admin",
    "/admin/devices/{device_id}": "admin",
    "/admin/devices/{device_id}/delete": "admin",
    "/admin/import": "admin",
    "/notify/channels": "admin",
    "/notify/channels/{channel_id}/test": "operator",
    "/notify/channels/{channel_id}/delete": "admin",
    "/notify/messages/{message_id}/{action}": "admin",
    "/workers/{worker_id}/forget": "admin",
    "/discovery": "admin",
    "/discovery/runs/{run_id}/approve": "admin",
    "/discovery/runs/{run_id}/rerun": "admin",
    "/devices/{device_id}/neighbours": "operator",
    "/admin/users/{user_id}/grants": "admin",
    "/admin/directories": "admin",
    "/admin/directories/{name}/delete": "admin",
    "/directory/{name}/people/{login:path}/do/{action:dir_action}": "operator",  # and the directory grant (the matrix checks it)
    "/devices/{device_id}/terminal": "operator",
    "/terminal/{session_id}/end": "admin",
}
# Form routes any signed-in user may post: their own account, their own push devices, actions (role per action).
FORM_OWN_SCOPE = ("/account", "/logout", "/notify/devices/", "/devices/{device_id}/actions/")
# Form routes with their own guard (the sign-in steps) rather than a signed-in role.
FORM_PUBLIC = {"/login", "/login/2fa"}
RANK = {"viewer": 0, "operator": 1, "admin": 2}

# A directory action is one of the catalog's ids (its route's convertor matches nothing else).
FILLED = {"{action}": "ack", "{action:dir_action}": "unlock"}


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: FILLED.get(m.group(), "1"), path)


def _walk(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _walk(route.original_router.routes)


def app_routes(app: FastAPI) -> list[APIRoute]:
    """Every route of the app, including those of included routers."""
    return list(_walk(app.routes))


@pytest.fixture
def roles(app_env: AppEnv) -> dict[str, str]:
    """A bearer token per role."""
    return {role: app_env.token(f"t-{role}", role) for role in RANK}


def _call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if method in ("post", "put", "patch"):
        kwargs["json"] = {}
    return client.request(method.upper(), path, **kwargs).status_code


def test_every_state_changing_api_route_checks_the_role(app_env: AppEnv, roles: dict[str, str]) -> None:
    spec = app_env.client.get("/api/v1/openapi.json").json()
    checked = 0
    problems = []
    for path, ops in spec["paths"].items():
        for method in ops:
            if method not in WRITE_METHODS:
                continue
            url = _fill(path)
            key = (method, path)
            anonymous = _call(app_env.client, method, url)
            if key in PUBLIC_WRITES:
                if anonymous in (200, 201, 204, 401) or anonymous >= 500:
                    problems.append(f"{method} {path} without its token: {anonymous}")
                continue
            if anonymous != 401:
                problems.append(f"{method} {path} anonymous: {anonymous}")
            need = "viewer" if OWN_SCOPE.match(path) else API_ROLES.get(key, "operator")
            for role, token in roles.items():
                got = _call(app_env.client, method, url, bearer(token))
                allowed = RANK[role] >= RANK[need]
                if not allowed and got != 403:
                    problems.append(f"{method} {path} as {role}: {got}, expected 403")
                if allowed and got in (401, 403) and key in API_ROLES:
                    problems.append(f"{method} {path} as {role}: {got}, expected to be let in")
                if got >= 500 and got != 503:  # 503: polling is not running in this test app
                    problems.append(f"{method} {path} as {role}: {got}")
            checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 25


def test_every_get_api_route_needs_a_sign_in(app_env: AppEnv) -> None:
    spec = app_env.client.get("/api/v1/openapi.json").json()
    open_routes = {"/healthz", "/api/v1/openapi.json"}
    for path, ops in spec["paths"].items():
        if "get" in ops and path not in open_routes:
            assert app_env.client.get(_fill(path)).status_code == 401, path


def _form_posts(app: FastAPI) -> list[str]:
    return sorted({r.path for r in app_routes(app) if "POST" in r.methods and not r.include_in_schema})


def test_every_form_route_needs_a_session_and_the_role(app_env: AppEnv) -> None:
    forms = _form_posts(app_env.app)
    assert len(forms) >= 20
    anonymous = TestClient(app_env.app, follow_redirects=False)
    for path in forms:
        if path in FORM_PUBLIC:
            continue
        response = anonymous.post(_fill(path), data={})
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
    app_env.user("vee", "viewer")
    app_env.user("opal", "operator")
    for name, role in (("vee", "viewer"), ("opal", "operator")):
        client = TestClient(app_env.app, follow_redirects=False)
        sign_in(client, name)
        csrf = form_csrf(client.get("/account").text)
        for path, need in FORM_ROLES.items():
            if RANK[role] < RANK[need]:
                got = client.post(_fill(path), data={"csrf_token": csrf})
                assert got.status_code == 403, (path, role, got.status_code)
    unknown = set(forms) - set(FORM_ROLES) - FORM_PUBLIC
    assert all(p.startswith(FORM_OWN_SCOPE) for p in unknown), sorted(
        unknown - {p for p in unknown if p.startswith(FORM_OWN_SCOPE)}
    )


def test_every_form_checks_csrf(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    sign_in(app_env.client, "ada")
    for path in _form_posts(app_env.app):
        if path == "/login":
            continue  # its own double-submit token: tested below
        response = app_env.client.post(_fill(path), data={"csrf_token": "forged"})
        assert response.status_code in (403, 303), (path, response.status_code)
        if response.status_code == 303:  # only the 2FA step, which this full session may not see at all
            assert path == "/login/2fa", path
    assert app_env.client.get("/api/v1/me").status_code == 200  # nothing above signed us out
    page = TestClient(app_env.app, follow_redirects=False)
    login = page.post("/login", data={"username": "ada", "password": "correct horse battery", "csrf_token": "x"})
    assert login.status_code == 400


def _snapshot(env: AppEnv) -> dict[str, list[tuple[Any, ...]]]:
    volatile = {"sessions": {"last_seen"}, "api_tokens": {"last_used"}}
    shot = {}
    with env.svc.reader.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name == "meta":
                continue  # the server's own lazily made keys (e.g. the Web Push key), not user-visible state
            skip = volatile.get(table.name, set())
            columns = ", ".join(c.name for c in table.columns if c.name not in skip)
            query = f"SELECT {columns} FROM {table.name}"  # noqa: S608 - names from the schema
            shot[table.name] = sorted(map(tuple, sql.rows(conn, query)), key=repr)
    return shot


def test_get_requests_change_nothing(app_env: AppEnv) -> None:
    admin = app_env.token("gadmin", "admin")
    created = app_env.client.post(
        "/api/v1/devices", json={"name": "sw1", "address": "192.0.2.1", "snmp": {"community": "c0mmunity"}}, headers=bearer(admin)
    )
    assert created.status_code == 201
    app_env.user("gina", "admin")
    sign_in(app_env.client, "gina")
    before = _snapshot(app_env)
    seen = 0
    for route in app_routes(app_env.app):
        response_class = getattr(route.response_class, "value", route.response_class)
        if (
            "GET" not in route.methods
            or route.path.startswith("/static")
            or "EventSource" in getattr(response_class, "__name__", "")
        ):
            continue  # a live event stream never ends by itself; it only reads
        url = _fill(route.path).replace("/history", "/history?metric=cpu_pct")
        response = app_env.client.get(url, headers=bearer(admin) if route.include_in_schema else {})
        assert response.status_code < 500, (url, response.status_code)
        seen += 1
    assert seen >= 25
    assert _snapshot(app_env) == before


def _schemas_allow_extra(schema: dict[str, Any], components: dict[str, Any], seen: set[str]) -> list[str]:
    found = []
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        if name not in seen:
            seen.add(name)
            found += _schemas_allow_extra(components[name], components, seen)
        return found
    if schema.get("type") == "object" and "properties" in schema and schema.get("additionalProperties") is not False:
        found.append(schema.get("title", "?"))
    for key in ("properties",):
        for sub in schema.get(key, {}).values():
            found += _schemas_allow_extra(sub, components, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            found += _schemas_allow_extra(sub, components, seen)
    if isinstance(schema.get("items"), dict):
        found += _schemas_allow_extra(schema["items"], components, seen)
    return found


def test_every_json_body_refuses_unknown_fields(app_env: AppEnv) -> None:
    spec = app_env.client.get("/api/v1/openapi.json").json()
    components = spec.get("components", {}).get("schemas", {})
    loose = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                loose += [f"{method} {path}: {name}" for name in _schemas_allow_extra(body, components, set())]
    assert not loose, loose


def test_patching_a_device_refuses_unknown_top_level_fields(app_env: AppEnv) -> None:
    admin = app_env.token("padmin", "admin")
    device = app_env.client.post(
        "/api/v1/devices", json={"name": "r1", "address": "192.0.2.2", "snmp": {"community": "c0mmunity"}}, headers=bearer(admin)
    ).json()
    refused = app_env.client.patch(f"/api/v1/devices/{device['id']}", json={"tags": ["a"], "owner": "me"}, headers=bearer(admin))
    assert refused.status_code == 422
    ok = app_env.client.patch(f"/api/v1/devices/{device['id']}", json={"tags": ["a"]}, headers=bearer(admin))
    assert ok.status_code == 200 and ok.json()["tags"] == ["a"]


def test_the_patch_body_lists_every_inventory_field() -> None:
    from server.config.inventory import DeviceSpec
    from server.services.bodies import DevicePatch

    assert set(DevicePatch.model_fields) == set(DeviceSpec.model_fields)


def test_another_users_passkey_is_not_found(app_env: AppEnv) -> None:
    mine = app_env.token("pk1", "viewer")
    app_env.user("pk2", "viewer")
    with app_env.svc.engine.begin() as conn:
        other = sql.scalar(conn, "SELECT id FROM users WHERE name = :name", name="pk2")
        key_id = twofactor.add_passkey(conn, int(other), "cred-of-pk2", b"\x01", 0, "their phone", [])
    # A token never removes a passkey (its own neither: 409); a browser session finds only its own passkeys.
    assert app_env.client.delete(f"/api/v1/account/passkeys/{key_id}", headers=bearer(mine)).status_code == 409
    browser = TestClient(app_env.app, follow_redirects=False)
    sign_in(browser, "pk1")
    page = browser.get("/account/passkeys")
    assert browser.post(f"/account/passkeys/{key_id}/remove", data={"csrf_token": form_csrf(page.text)}).status_code == 404
    with app_env.svc.reader.connect() as conn:
        assert twofactor.list_passkeys(conn, int(other))


def test_security_headers_and_cookie_flags(app_env: AppEnv) -> None:
    page = app_env.client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in page.headers  # plain http: HSTS would be ignored and is not sent
    app_env.user("hedy", "viewer")
    response = app_env.client.post(
        "/login", data={"username": "hedy", "password": "correct horse battery", "csrf_token": form_csrf(page.text)}
    )
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie


@pytest.fixture
def https_env(tmp_path: Path) -> Iterator[AppEnv]:
    """An app configured for HTTPS behind a proxy."""
    from server.config.settings import Settings

    yield from make_app_env(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, secure_cookies=True))


def test_https_gets_hsts_and_secure_cookies(https_env: AppEnv) -> None:
    https_env.user("ida", "viewer")
    client = TestClient(https_env.app, base_url="https://testserver", follow_redirects=False)
    page = client.get("/login")
    assert page.headers["strict-transport-security"].startswith("max-age=")
    assert "secure" in page.headers["set-cookie"].lower()
    response = client.post(
        "/login", data={"username": "ida", "password": "correct horse battery", "csrf_token": form_csrf(page.text)}
    )
    assert "secure" in response.headers["set-cookie"].lower()


def test_templates_have_no_inline_script_handlers_or_styles() -> None:
    bad = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|\son[a-z]+\s*=|\sstyle\s*=|<style|javascript:", re.IGNORECASE)
    offenders = []
    # E-mail bodies (notify_*) are not served to browsers: mail clients need inline styles; scripts are still out.
    email_ok = re.compile(r"\sstyle\s*=", re.IGNORECASE)
    for template in sorted(TEMPLATES.glob("*.html")):
        for n, line in enumerate(template.read_text().splitlines(), 1):
            if template.name.startswith("notify_"):
                line = email_ok.sub(" ", line)
            if bad.search(line):
                offenders.append(f"{template.name}:{n}: {line.strip()[:100]}")
    assert not offenders, offenders
