"""Sign-in, sessions, CSRF, tokens, roles and throttling through the real app and its database."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from server.auth import access as auth
from server.auth import passwords
from server.config.settings import Settings
from server.store import accounts
from server.store.schema import api_tokens, audit, sessions, users
from tests.server.conftest import PASSWORD, AppEnv, bearer, form_csrf, make_app_env, sign_in


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


def set_cookie_header(response_headers: list[tuple[str, str]], name: str) -> str:
    found = [v for k, v in response_headers if k.lower() == "set-cookie" and v.startswith(f"{name}=")]
    assert found, f"no Set-Cookie for {name}"
    return found[0]


def replay(env: AppEnv, cookie: str) -> int:
    """Status of /api/v1/me sent with exactly this session cookie."""
    env.client.cookies.clear()
    env.client.cookies.set(auth.SESSION_COOKIE, cookie, domain="testserver.local")
    return env.client.get("/api/v1/me").status_code


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
    with app_env.svc.engine.connect() as conn:
        stored = conn.execute(select(api_tokens.c.token_hash, api_tokens.c.last_used)).one()
    assert stored.token_hash == accounts.digest(token) and token not in stored.token_hash
    assert stored.last_used is not None


@pytest.mark.parametrize("header", ["Bearer pnt_wrong", "Bearer ", "Basic YWRhOnB3", "pnt_x", "Bearer " + "x" * 5000])
def test_bad_authorization_headers_are_refused(app_env: AppEnv, header: str) -> None:
    app_env.token("ada", "admin")
    assert app_env.client.get("/api/v1/me", headers={"Authorization": header}).status_code == 401


def test_a_revoked_token_stops_working(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    with app_env.svc.engine.begin() as conn:
        conn.execute(update(api_tokens).values(revoked=True))
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_a_disabled_user_is_locked_out_everywhere(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    sign_in(app_env.client, "ada")
    with app_env.svc.engine.begin() as conn:
        conn.execute(update(users).values(disabled=True))
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert app_env.client.get("/api/v1/me").status_code == 401
    page = app_env.client.get("/login")
    response = app_env.client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": form_csrf(page.text)}
    )
    assert response.status_code == 401


# ---------------------------------------------------------------- the sign-in form


def test_the_login_form_sets_a_double_submit_cookie(app_env: AppEnv) -> None:
    page = app_env.client.get("/login")
    assert page.status_code == 200
    cookie = set_cookie_header(page.headers.multi_items(), "pn_login_csrf")
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert form_csrf(page.text) == app_env.client.cookies.get("pn_login_csrf")


def test_sign_in_starts_a_hardened_session(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    page = app_env.client.get("/login")
    response = app_env.client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": form_csrf(page.text), "next": "/devices/7"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/devices/7"
    cookie = set_cookie_header(response.headers.multi_items(), auth.SESSION_COOKIE)
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/" in lowered
    assert "secure" not in lowered.replace("samesite", ""), "plain HTTP in tests: Secure would drop the cookie"
    value = app_env.client.cookies.get(auth.SESSION_COOKIE)
    assert value
    with app_env.svc.engine.connect() as conn:
        stored = conn.execute(select(sessions.c.id)).scalars().all()
        actions = conn.execute(select(audit.c.action)).scalars().all()
    assert stored == [accounts.digest(value)], "sessions are kept only as digests"
    assert "login" in actions
    me = app_env.client.get("/api/v1/me")
    assert me.status_code == 200 and me.json()["name"] == "ada"


def test_secure_cookies_when_configured(tmp_path: Path) -> None:
    for env in make_app_env(Settings(data_dir=tmp_path / "d", secure_cookies=True)):
        env.client.base_url = env.client.base_url.copy_with(scheme="https")  # a browser sends Secure cookies over TLS only
        env.user("ada", "admin")
        page = env.client.get("/login")
        assert "secure" in set_cookie_header(page.headers.multi_items(), "pn_login_csrf").lower()
        response = env.client.post(
            "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": form_csrf(page.text)}
        )
        assert "; secure" in set_cookie_header(response.headers.multi_items(), auth.SESSION_COOKIE).lower()


def test_sign_in_never_adopts_a_session_id_from_the_browser(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    app_env.client.cookies.set(auth.SESSION_COOKIE, "attacker-chosen-value", domain="testserver.local")
    cookie = sign_in(app_env.client, "ada")
    assert cookie != "attacker-chosen-value"


def test_login_without_the_form_cookie_is_refused(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    page = app_env.client.get("/login")
    token = form_csrf(page.text)
    response = app_env.client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": "forged"})
    assert response.status_code == 400 and "expired" in response.text
    app_env.client.cookies.delete("pn_login_csrf")
    response = app_env.client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 400
    assert auth.SESSION_COOKIE not in app_env.client.cookies


def test_wrong_password_and_unknown_user_look_the_same(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    page = app_env.client.get("/login")
    token = form_csrf(page.text)
    wrong = app_env.client.post("/login", data={"username": "ada", "password": "not the password", "csrf_token": token})
    unknown = app_env.client.post("/login", data={"username": "nobody", "password": "not the password", "csrf_token": token})
    assert wrong.status_code == unknown.status_code == 401
    rendered_at = re.compile(r'data-rendered="\d+"')  # the page's own timestamp may tick between the two
    assert rendered_at.sub("", wrong.text) == rendered_at.sub("", unknown.text)
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers
    assert auth.SESSION_COOKIE not in app_env.client.cookies


def test_an_account_from_one_address_waits_after_five_failures(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    app_env.user("bob", "viewer")
    page = app_env.client.get("/login")
    token = form_csrf(page.text)
    for _ in range(app_env.svc.settings.signin_free_failures):
        response = app_env.client.post("/login", data={"username": "ada", "password": "guess-guess", "csrf_token": token})
        assert response.status_code == 401
    right = app_env.client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": token})
    assert right.status_code == 429, "the right password waits too while this address is slowed down for this account"
    assert int(right.headers["retry-after"]) >= 1
    assert auth.SESSION_COOKIE not in app_env.client.cookies
    other = app_env.client.post("/login", data={"username": "bob", "password": PASSWORD, "csrf_token": token})
    assert other.status_code == 303, "another account from the same address is not slowed down"
    with app_env.svc.engine.connect() as conn:
        failed = conn.execute(select(audit.c.target).where(audit.c.action == "login.failed")).scalars().all()
    assert failed.count("ada") == app_env.svc.settings.signin_free_failures


def test_throttling_expires_with_its_window(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    settings, now = app_env.svc.settings, time.time()
    with app_env.svc.engine.begin() as conn:
        for _ in range(settings.signin_free_failures + 10):
            accounts.record_login(conn, "ada", "testclient", False, now)
        assert auth.login(conn, settings, "ada", PASSWORD, "testclient", now).throttled is not None
        later = now + settings.signin_window_minutes * 60 + 1
        assert auth.login(conn, settings, "ada", PASSWORD, "testclient", later).user is not None


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil", "/\\evil", "\\\\evil", "http:/evil", "javascript:alert(1)", "evil", "/\t/evil.example",
     "///evil.example", " //evil.example"],
)
def test_next_never_leaves_the_site(app_env: AppEnv, target: str) -> None:
    app_env.user("ada", "admin")
    page = app_env.client.get("/login", params={"next": target})
    assert form_csrf(page.text)
    assert 'name="next" value="/"' in page.text
    response = app_env.client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": form_csrf(page.text), "next": target}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_next_keeps_a_local_path_with_its_query(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    redirect = app_env.client.get("/?tag=core&q=sw")
    assert redirect.status_code == 303
    login_url = redirect.headers["location"]
    assert login_url.startswith("/login?next=")
    page = app_env.client.get(login_url)
    assert 'name="next" value="/?tag=core&amp;q=sw"' in page.text
    response = app_env.client.post(
        "/login", data={"username": "ada", "password": PASSWORD, "csrf_token": form_csrf(page.text), "next": "/?tag=core&q=sw"}
    )
    assert response.headers["location"] == "/?tag=core&q=sw"


# ---------------------------------------------------------------- CSRF and sign-out


def test_session_writes_need_the_csrf_token(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    sign_in(app_env.client, "ada")
    csrf = form_csrf(app_env.client.get("/").text)
    body = {"name": "sw1", "address": "192.0.2.1"}
    refused = app_env.client.post("/api/v1/devices", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert app_env.client.post("/api/v1/devices", json=body, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert app_env.client.get("/api/v1/devices").json()["items"] == []
    accepted = app_env.client.post("/api/v1/devices", json=body, headers={"X-CSRF-Token": csrf})
    assert accepted.status_code == 201


def test_bearer_tokens_need_no_csrf_token(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    response = app_env.client.post("/api/v1/devices", json={"name": "sw1", "address": "192.0.2.1"}, headers=bearer(token))
    assert response.status_code == 201


def test_sign_out_needs_csrf_and_ends_the_session(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    cookie = sign_in(app_env.client, "ada")
    csrf = form_csrf(app_env.client.get("/").text)
    assert app_env.client.post("/logout", data={"csrf_token": "nope"}).status_code == 403
    assert app_env.client.get("/api/v1/me").status_code == 200
    response = app_env.client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert replay(app_env, cookie) == 401, "the old cookie must be dead on the server, not just deleted in the browser"
    with app_env.svc.engine.connect() as conn:
        assert conn.execute(select(sessions)).first() is None


def test_idle_and_old_sessions_expire(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    cookie = sign_in(app_env.client, "ada")
    s = app_env.svc.settings
    with app_env.svc.engine.begin() as conn:
        conn.execute(update(sessions).values(last_seen=time.time() - s.session_idle_minutes * 60 - 5))
    assert app_env.client.get("/api/v1/me").status_code == 401
    cookie = sign_in(app_env.client, "ada")
    with app_env.svc.engine.begin() as conn:
        conn.execute(update(sessions).values(created_at=time.time() - s.session_max_hours * 3600 - 5))
    assert replay(app_env, cookie) == 401


def test_a_password_change_ends_every_session(app_env: AppEnv) -> None:
    user_id = app_env.user("ada", "admin")
    sign_in(app_env.client, "ada")
    with app_env.svc.engine.begin() as conn:
        accounts.set_password_hash(conn, user_id, passwords.hash_password("a whole new password"))
    assert app_env.client.get("/api/v1/me").status_code == 401


# ---------------------------------------------------------------- users and passwords


def test_passwords_are_hashed_with_argon2(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    with app_env.svc.engine.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar()
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


# ---------------------------------------------------------------- hostile input at the door


def test_non_ascii_csrf_tokens_are_refused_not_crashed(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    app_env.client.get("/login")
    response = app_env.client.post("/login", data={"username": "ada", "password": PASSWORD, "csrf_token": "é✓"})
    assert response.status_code == 400
    sign_in(app_env.client, "ada")
    refused = app_env.client.post("/api/v1/devices", json={"name": "a", "address": "192.0.2.1"},
                                  headers={"X-CSRF-Token": "é✓".encode()})
    assert refused.status_code == 403
    assert app_env.client.post("/logout", data={"csrf_token": "é✓"}).status_code == 403


@pytest.mark.parametrize(
    ("username", "password"),
    [("ada\x00", PASSWORD), ("a\x00da", "x\x00y"), ("ада", PASSWORD), ("x" * 200, "p" * 1024), ("\ufeff", ""), ("ada", "\x00")],
)
def test_hostile_sign_in_input_on_both_databases(tmp_path: Path, db_url: str, username: str, password: str) -> None:
    for env in make_app_env(Settings(data_dir=tmp_path / "app", database_url=db_url)):
        env.user("ada", "admin")
        page = env.client.get("/login")
        response = env.client.post(
            "/login", data={"username": username, "password": password, "csrf_token": form_csrf(page.text)}
        )
        assert response.status_code == 401, response.text[:300]
        assert auth.SESSION_COOKIE not in env.client.cookies
