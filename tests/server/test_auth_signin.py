"""Sign-in, sessions, CSRF, sign-out and throttling through the real app and its database."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.auth import access as auth
from server.auth import passwords
from server.config.settings import Settings
from server.store import accounts
from tests import sql
from tests.server.conftest import PASSWORD, AppEnv, bearer, clean_env, form_csrf, make_app_env, sign_in


def set_cookie_header(response_headers: list[tuple[str, str]], name: str) -> str:
    found = [v for k, v in response_headers if k.lower() == "set-cookie" and v.startswith(f"{name}=")]
    assert found, f"no Set-Cookie for {name}"
    return found[0]


def replay(env: AppEnv, cookie: str) -> int:
    """Status of /api/v1/me sent with exactly this session cookie."""
    env.client.cookies.clear()
    env.client.cookies.set(auth.SESSION_COOKIE, cookie, domain="testserver.local")
    return env.client.get("/api/v1/me").status_code


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
        stored = sql.scalars(conn, "SELECT id FROM sessions")
        actions = sql.scalars(conn, "SELECT action FROM audit")
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
    failed = sql.scalars(app_env.svc.engine, "SELECT target FROM audit WHERE action = 'login.failed'")
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


@pytest.fixture(scope="module")
def one_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppEnv]:
    """One app (user ada) for the module's tests that only sign in: an app start-up per case is not what they test."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("signin") / "data", writer_batch_seconds=0.05)
    with clean_env():
        for env in make_app_env(settings):
            env.user("ada", "admin")
            yield env


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil", "/\\evil", "\\\\evil", "http:/evil", "javascript:alert(1)", "evil", "/\t/evil.example",
     "///evil.example", " //evil.example"],
)
def test_next_never_leaves_the_site(one_app: AppEnv, target: str) -> None:
    client = TestClient(one_app.app, follow_redirects=False)  # a browser of its own on the module's app
    page = client.get("/login", params={"next": target})
    assert form_csrf(page.text)
    assert 'name="next" value="/"' in page.text
    response = client.post(
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
    assert sql.rows(app_env.svc.engine, "SELECT * FROM sessions") == []


def test_idle_and_old_sessions_expire(app_env: AppEnv) -> None:
    app_env.user("ada", "admin")
    cookie = sign_in(app_env.client, "ada")
    s = app_env.svc.settings
    sql.run(app_env.svc.engine, "UPDATE sessions SET last_seen = :t", t=time.time() - s.session_idle_minutes * 60 - 5)
    assert app_env.client.get("/api/v1/me").status_code == 401
    cookie = sign_in(app_env.client, "ada")
    sql.run(app_env.svc.engine, "UPDATE sessions SET created_at = :t", t=time.time() - s.session_max_hours * 3600 - 5)
    assert replay(app_env, cookie) == 401


def test_a_password_change_ends_every_session(app_env: AppEnv) -> None:
    user_id = app_env.user("ada", "admin")
    sign_in(app_env.client, "ada")
    with app_env.svc.engine.begin() as conn:
        accounts.set_password_hash(conn, user_id, passwords.hash_password("a whole new password"))
    assert app_env.client.get("/api/v1/me").status_code == 401


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
