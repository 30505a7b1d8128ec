"""Roles, bearer tokens, users and passwords through the real app and its database."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from server.auth import passwords
from server.store import accounts
from tests import sql
from tests.server.conftest import PASSWORD, AppEnv, bearer, form_csrf, sign_in


def api_routes(env: AppEnv) -> list[tuple[str, str]]:
    """(method, path with ids filled in) of every route in the OpenAPI schema except the open ones."""
    paths = env.client.get("/api/v1/openapi.json").json()["paths"]
    out = []
    for path, operations in paths.items():
        if path in OPEN or path.startswith(SIGN_IN):
            continue
        out += [(method.upper(), re.sub(r"\{[^}]+\}", "1", path)) for method in sorted(operations)]
    return out


# The sign-in ceremony itself (passkeys) runs before anyone is signed in; a notification's ack/snooze button
# carries its own single-use token instead of a session.
OPEN = {"/healthz", "/api/v1/push/action"}
SIGN_IN = "/api/v1/auth/"
# Writes a viewer may make: their own password, 2FA, sessions and phones; actions check the role their
# catalog entry names, after reading which action is meant (tests/server/test_actions*.py cover those).
VIEWER_WRITES = ("/api/v1/account", "/api/v1/push/subscriptions", "/api/v1/actions/")


# ---------------------------------------------------------------- who may call what


def test_every_api_route_needs_a_sign_in(app_env: AppEnv) -> None:
    routes = api_routes(app_env)
    assert ("GET", "/api/v1/devices") in routes and ("GET", "/metrics") in routes
    for method, path in routes:
        response = app_env.client.request(method, path, json={})
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json() == {"detail": "not signed in"}
        assert response.headers["www-authenticate"] == "Bearer"


def test_viewers_cannot_change_anything_but_their_own_account(app_env: AppEnv) -> None:
    token = app_env.token("vera", "viewer")
    writes = [(m, p) for m, p in api_routes(app_env) if m != "GET" and not p.startswith(VIEWER_WRITES)]
    assert ("POST", "/api/v1/devices") in writes and ("DELETE", "/api/v1/devices/1") in writes
    for method, path in [*writes, ("GET", "/api/v1/users"), ("GET", "/api/v1/audit")]:
        response = app_env.client.request(method, path, json={}, headers=bearer(token))
        assert response.status_code == 403, (method, path, response.status_code)
        assert "role" in response.json()["detail"]


ADMIN_ONLY = [
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/devices"),
    ("PATCH", "/api/v1/devices/1"),
    ("DELETE", "/api/v1/devices/1"),
]


def test_operators_cannot_do_admin_work(app_env: AppEnv) -> None:
    token = app_env.token("otto", "operator")
    for method, path in ADMIN_ONLY:
        response = app_env.client.request(method, path, json={}, headers=bearer(token))
        assert response.status_code == 403, (method, path)
    # An operator may ask for a poll; this app runs without polling, so the answer is 503, not 403.
    assert app_env.client.post("/api/v1/devices/1/poll", headers=bearer(token)).status_code == 503


def test_viewers_can_read(app_env: AppEnv) -> None:
    token = app_env.token("vera", "viewer")
    for path in ("/api/v1/me", "/api/v1/devices", "/metrics"):
        assert app_env.client.get(path, headers=bearer(token)).status_code == 200, path


# ---------------------------------------------------------------- tokens


def test_bearer_tokens_work_and_are_stored_as_digests(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    assert token.startswith("pnt_")
    for header in (f"Bearer {token}", f"bearer {token}", f"BEARER  {token} "):
        response = app_env.client.get("/api/v1/me", headers={"Authorization": header})
        assert response.status_code == 200
        assert response.json()["name"] == "ada" and response.json()["role"] == "admin"
    stored = sql.one(app_env.svc.engine, "SELECT token_hash, last_used FROM api_tokens")
    assert stored.token_hash == accounts.digest(token) and token not in stored.token_hash
    assert stored.last_used is not None


@pytest.mark.parametrize("header", ["Bearer pnt_wrong", "Bearer ", "Basic YWRhOnB3", "pnt_x", "Bearer " + "x" * 5000])
def test_bad_authorization_headers_are_refused(app_env: AppEnv, header: str) -> None:
    app_env.token("ada", "admin")
    assert app_env.client.get("/api/v1/me", headers={"Authorization": header}).status_code == 401


def test_a_revoked_token_stops_working(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    sql.run(app_env.svc.engine, "UPDATE api_tokens SET revoked = true")
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_a_disabled_user_is_locked_out_everywhere(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    sign_in(app_env.client, "ada")
    sql.run(app_env.svc.engine, "UPDATE users SET disabled = true")
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert app_env.client.get("/api/v1/me").status_code == 401
    page = app_env.client.get("/login")
    response = app_env.client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": form_csrf(page.text)}
    )
    assert response.status_code == 401


# ---------------------------------------------------------------- users and passwords


def test_the_product_hashes_passwords_at_rfc_9106s_cost() -> None:
    """The test processes hash at a low cost (tests/conftest.py); the product, in a process of its own, at
    argon2-cffi's defaults: RFC 9106's second recommended option (t=3, m=64 MiB, p=4)."""
    code = "from server.auth import passwords; print(passwords.hash_password('a long enough password'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.startswith("$argon2id$v=19$m=65536,t=3,p=4$"), done.stdout


def test_passwords_are_hashed_with_argon2(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    stored = sql.scalar(app_env.svc.engine, "SELECT password_hash FROM users")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize(
    ("name", "role", "password", "fragment"),
    [
        ("ok-name", "admin", "short", "at least 10"),
        ("bad name", "admin", PASSWORD, "user names"),
        ("-dash", "viewer", PASSWORD, "user names"),
        ("ok", "root", PASSWORD, "role must be"),
        ("ok", "viewer", "x" * 1025, "too long"),
    ],
)
def test_create_user_validates(app_env: AppEnv, name: str, role: str, password: str, fragment: str) -> None:
    with pytest.raises(passwords.UserError, match=fragment), app_env.svc.engine.begin() as conn:
        passwords.create_user(conn, name, role, password)


def test_duplicate_users_are_refused(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    with pytest.raises(passwords.UserError, match="already exists"):
        app_env.user("ada", "viewer")


def test_users_api_creates_users_and_never_shows_hashes(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    created = app_env.client.post(
        "/api/v1/users", json={"name": "vera", "role": "viewer", "password": "vera's long password"}, headers=bearer(token)
    )
    assert created.status_code == 201 and created.json()["role"] == "viewer"
    duplicate = app_env.client.post(
        "/api/v1/users", json={"name": "vera", "role": "viewer", "password": "vera's long password"}, headers=bearer(token)
    )
    assert duplicate.status_code == 422
    weak = app_env.client.post("/api/v1/users", json={"name": "w", "role": "viewer", "password": "short"}, headers=bearer(token))
    assert weak.status_code == 422
    listed = app_env.client.get("/api/v1/users", headers=bearer(token))
    assert [u["name"] for u in listed.json()["items"]] == ["ada", "vera"]
    assert "argon2" not in listed.text and "password" not in listed.text
    assert "vera's long password" not in created.text
