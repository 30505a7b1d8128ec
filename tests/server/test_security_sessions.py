"""Sessions: fixation, ending everywhere on password change / 2FA reset / disable, the session list, session_alive."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from server.auth import access as auth
from server.auth.access import Principal
from server.config.settings import Settings
from server.store import accounts
from server.web import live as live_module
from server.web.streams import session_alive
from tests import sql
from tests.server.app_browser import session_cookie as browser_cookie
from tests.server.app_fleet import serve
from tests.server.conftest import PASSWORD, AppEnv, bearer, form_csrf, sign_in
from tests.server.security_helpers import (
    SseReader,
    TotpClock,
    login_password,
    session_cookie,
    user_with_totp,
)


def _stored_ids(env: AppEnv) -> set[str]:
    with env.svc.reader.connect() as conn:
        return set(sql.scalars(conn, "SELECT id FROM sessions"))


def _second_client(env: AppEnv, name: str) -> TestClient:
    other = TestClient(env.app, follow_redirects=False)
    sign_in(other, name)
    return other


def test_a_session_id_set_before_sign_in_is_not_reused(app_env: AppEnv) -> None:
    app_env.user("ann", "viewer")
    planted = "attacker-chosen-session-id"
    app_env.client.cookies.set(auth.SESSION_COOKIE, planted, domain="testserver.local")
    cookie = sign_in(app_env.client, "ann")
    assert cookie != planted
    assert accounts.digest(planted) not in _stored_ids(app_env)
    # A session the browser already had is ended at sign-in, not kept alongside the new one.
    before = session_cookie(app_env.client)
    again = sign_in(app_env.client, "ann")
    assert again != before
    assert accounts.digest(str(before)) not in _stored_ids(app_env)
    assert len(_stored_ids(app_env)) == 1


def test_sign_out_ends_the_session(app_env: AppEnv) -> None:
    app_env.user("bob", "viewer")
    cookie = sign_in(app_env.client, "bob")
    page = app_env.client.get("/")
    assert app_env.client.post("/logout", data={"csrf_token": form_csrf(page.text)}).status_code == 303
    reused = TestClient(app_env.app, follow_redirects=False, cookies={auth.SESSION_COOKIE: cookie})
    assert reused.get("/").status_code == 303
    assert reused.get("/api/v1/me").status_code == 401


def test_a_password_change_ends_every_session_but_gives_this_browser_a_new_one(app_env: AppEnv) -> None:
    app_env.user("cat", "viewer")
    old = sign_in(app_env.client, "cat")
    phone = _second_client(app_env, "cat")
    assert phone.get("/api/v1/me").status_code == 200
    page = app_env.client.get("/account/password")
    changed = app_env.client.post(
        "/account/password",
        data={
            "current": PASSWORD,
            "new": "a brand new secret",
            "again": "a brand new secret",
            "csrf_token": form_csrf(page.text),
        },
    )
    assert changed.status_code == 303
    assert phone.get("/api/v1/me").status_code == 401  # the other device is signed out at once
    stale = TestClient(app_env.app, follow_redirects=False, cookies={auth.SESSION_COOKIE: old})
    assert stale.get("/api/v1/me").status_code == 401  # and so is the old cookie of this device
    assert session_cookie(app_env.client) != old
    assert app_env.client.get("/api/v1/me").status_code == 200
    assert login_password(TestClient(app_env.app, follow_redirects=False), "cat", "a brand new secret") == "/"


def test_the_api_password_change_checks_the_current_password(app_env: AppEnv) -> None:
    """A token never changes its owner's password (a stolen one could guess the current password without limit, then
    lock the owner out); a session's wrong current passwords count as wrong step-up proofs, audited, and sign it out."""
    token = app_env.token("dan", "viewer")
    by_token = app_env.client.post(
        "/api/v1/account/password", json={"current": PASSWORD, "new": "0123456789ab"}, headers=bearer(token)
    )
    assert by_token.status_code == 409
    sign_in(app_env.client, "dan")
    csrf = {"X-CSRF-Token": form_csrf(app_env.client.get("/account").text)}
    extra = app_env.client.post(
        "/api/v1/account/password", json={"current": PASSWORD, "new": "0123456789ab", "role": "admin"}, headers=csrf
    )
    assert extra.status_code == 422
    tries = app_env.svc.settings.stepup_max_failures
    for _ in range(tries - 1):
        wrong = app_env.client.post("/api/v1/account/password", json={"current": "nope", "new": "0123456789ab"}, headers=csrf)
        assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    last = app_env.client.post("/api/v1/account/password", json={"current": "nope", "new": "0123456789ab"}, headers=csrf)
    assert last.status_code == 401 and "signed out" in last.text
    assert app_env.client.get("/api/v1/me").status_code == 401
    failed = sql.scalars(app_env.svc.engine, "SELECT detail FROM audit WHERE action = 'stepup.failed' AND target = 'dan'")
    assert len(failed) == tries and all(sql.json_of(d) == {"method": "current password"} for d in failed)
    assert login_password(TestClient(app_env.app, follow_redirects=False), "dan", PASSWORD) == "/"  # unchanged


def test_the_password_page_counts_wrong_current_passwords(app_env: AppEnv) -> None:
    app_env.user("fay", "viewer")
    sign_in(app_env.client, "fay")
    form = {"current": "nope", "new": "a brand new secret", "again": "a brand new secret"}
    tries = app_env.svc.settings.stepup_max_failures
    for n in range(tries):
        page = app_env.client.get("/account/password")
        assert page.status_code == 200
        answer = app_env.client.post("/account/password", data={**form, "csrf_token": form_csrf(page.text)})
        if n < tries - 1:
            assert answer.status_code == 422 and f"{tries} wrong tries sign this session out" in answer.text
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert app_env.client.get("/api/v1/me").status_code == 401


def test_removing_2fa_and_admin_reset_end_sessions_everywhere(app_env: AppEnv, clock: TotpClock) -> None:
    client, secret, _ = user_with_totp(app_env, "eli", "operator", clock)
    phone = TestClient(app_env.app, follow_redirects=False)
    login_password(phone, "eli")
    page = phone.get("/login/2fa")
    phone.post("/login/2fa", data={"code": clock.code(secret), "csrf_token": form_csrf(page.text), "next": "/"})
    assert phone.get("/api/v1/me").status_code == 200
    page = client.get("/account/totp")
    assert client.post("/account/totp/remove", data={"csrf_token": form_csrf(page.text)}).status_code == 303
    assert phone.get("/api/v1/me").status_code == 401
    assert client.get("/api/v1/me").status_code == 200
    # An admin's reset ends every session of the user, this one too.
    admin = app_env.token("root", "admin")
    user_id = client.get("/api/v1/me").json()["id"]
    assert app_env.client.post(f"/api/v1/users/{user_id}/reset-2fa", headers=bearer(admin)).status_code == 200
    assert client.get("/api/v1/me").status_code == 401


def test_disabling_a_user_ends_their_sessions_and_tokens(app_env: AppEnv) -> None:
    app_env.user("fox", "operator")
    client = TestClient(app_env.app, follow_redirects=False)
    sign_in(client, "fox")
    token = app_env.token("fox")
    admin = app_env.token("boss", "admin")
    fox_id = client.get("/api/v1/me").json()["id"]
    off = app_env.client.patch(f"/api/v1/users/{fox_id}", json={"disabled": True}, headers=bearer(admin))
    assert off.status_code == 200 and off.json()["disabled"] is True
    assert client.get("/api/v1/me").status_code == 401
    assert app_env.client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    assert not [s for s in _stored_ids(app_env)]
    page = client.get("/login")
    refused = client.post("/login", data={"username": "fox", "password": PASSWORD, "csrf_token": form_csrf(page.text)})
    assert refused.status_code == 401


def test_a_user_sees_and_ends_their_other_sessions(app_env: AppEnv) -> None:
    app_env.user("gil", "viewer")
    app_env.user("hop", "viewer")
    sign_in(app_env.client, "gil")
    phone = _second_client(app_env, "gil")
    stranger = _second_client(app_env, "hop")
    listed = app_env.client.get("/api/v1/account/sessions").json()["items"]
    assert len(listed) == 2 and sum(s["current"] for s in listed) == 1
    assert all(len(s["id"]) == 20 for s in listed)
    csrf = form_csrf(app_env.client.get("/account").text)
    theirs = stranger.get("/api/v1/account/sessions").json()["items"][0]["id"]
    # Another user's session id is simply not found.
    missing = app_env.client.delete(f"/api/v1/account/sessions/{theirs}", headers={"X-CSRF-Token": csrf})
    assert missing.status_code == 404
    assert stranger.get("/api/v1/me").status_code == 200
    other = next(s["id"] for s in listed if not s["current"])
    assert app_env.client.delete(f"/api/v1/account/sessions/{other}", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert phone.get("/api/v1/me").status_code == 401
    sign_in(phone, "gil")
    page = app_env.client.get("/account")
    assert "Sign out everywhere else" in page.text
    assert app_env.client.post("/account/sessions/end-others", data={"csrf_token": form_csrf(page.text)}).status_code == 303
    assert phone.get("/api/v1/me").status_code == 401
    assert app_env.client.get("/api/v1/me").status_code == 200


def _alive(app_env: AppEnv, session_id: str | None = None, token: str | None = None) -> bool:
    with app_env.svc.engine.connect() as conn:
        found = accounts.get_user_by_name(conn, "ida")
    assert found is not None
    user = found[0]
    kind = "token" if token else "session"
    who = Principal(user.id, user.name, user.role, kind, session_id, token_hash=accounts.digest(token) if token else None)
    return asyncio.run(session_alive(app_env.svc, who))


def test_session_alive_follows_the_session(app_env: AppEnv) -> None:
    app_env.user("ida", "viewer")
    cookie = sign_in(app_env.client, "ida")
    sid = accounts.digest(cookie)
    assert _alive(app_env, sid)
    assert not _alive(app_env)  # neither a session nor a token: nothing to stay alive on
    with app_env.svc.engine.begin() as conn:
        sql.run(conn, "UPDATE sessions SET created_at = created_at - :seconds", seconds=8 * 86400)
    assert not _alive(app_env, sid)  # past the absolute timeout
    sign_in(app_env.client, "ida")
    sid = accounts.digest(str(session_cookie(app_env.client)))
    page = app_env.client.get("/")
    app_env.client.post("/logout", data={"csrf_token": form_csrf(page.text)})
    assert not _alive(app_env, sid)


def test_a_bearer_token_stream_ends_when_its_user_is_disabled_or_the_token_revoked(app_env: AppEnv) -> None:
    app_env.user("ida", "viewer")
    token = app_env.token("ida")
    assert _alive(app_env, token=token)
    with app_env.svc.engine.begin() as conn:
        sql.update(conn, "users", "name = :name", {"disabled": True}, name="ida")
    assert not _alive(app_env, token=token)
    with app_env.svc.engine.begin() as conn:
        sql.update(conn, "users", "name = :name", {"disabled": False}, name="ida")
    assert _alive(app_env, token=token)
    with app_env.svc.engine.begin() as conn:
        sql.run(conn, "UPDATE api_tokens SET revoked = :revoked", revoked=True)
    assert not _alive(app_env, token=token)


def test_idle_sessions_end(app_env: AppEnv) -> None:
    app_env.user("jo", "viewer")
    sign_in(app_env.client, "jo")
    with app_env.svc.engine.begin() as conn:
        sql.run(conn, "UPDATE sessions SET last_seen = last_seen - :seconds", seconds=13 * 3600)
    assert app_env.client.get("/api/v1/me").status_code == 401
    assert not _stored_ids(app_env)


def test_open_live_streams_end_with_the_session_on_every_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real server and real SSE streams: a password change, a disable and a 2FA reset each end the open streams."""
    monkeypatch.setattr(live_module, "SESSION_CHECK_SECONDS", 0.5)
    with serve(Settings(data_dir=tmp_path / "data")) as server:
        for name in ("kim", "lee", "mo"):
            server.user(name, "operator")
        with server.svc.engine.begin() as conn:
            admin_id = accounts.insert_user(conn, "root", "!", "admin")
            admin = bearer(accounts.new_token(conn, admin_id, "test"))
        live_url = server.url + "/live"

        def streams(name: str) -> list[SseReader]:
            opened = [SseReader(live_url, browser_cookie(server.url, name)) for _ in range(2)]  # laptop and phone
            for stream in opened:
                stream.wait_for("hello")
            return opened

        def ended(opened: list[SseReader], why: str) -> None:
            for stream in opened:
                assert stream.ended.wait(15), f"a live stream outlived the session ({why})"
                assert stream.events[-1] == "bye", (why, stream.events)

        kim = streams("kim")
        with httpx.Client(base_url=server.url, cookies={auth.SESSION_COOKIE: browser_cookie(server.url, "kim")}) as laptop:
            page = laptop.get("/account/password")
            form = {"current": PASSWORD, "new": "a brand new secret", "again": "a brand new secret"}
            assert laptop.post("/account/password", data={**form, "csrf_token": form_csrf(page.text)}).status_code == 303
        ended(kim, "password change")
        lee = streams("lee")
        with httpx.Client(base_url=server.url, headers=admin) as api:
            lee_id = next(u["id"] for u in api.get("/api/v1/users").json()["items"] if u["name"] == "lee")
            assert api.patch(f"/api/v1/users/{lee_id}", json={"disabled": True}).status_code == 200
            ended(lee, "user disabled")
            mo = streams("mo")
            mo_id = next(u["id"] for u in api.get("/api/v1/users").json()["items"] if u["name"] == "mo")
            assert api.post(f"/api/v1/users/{mo_id}/reset-2fa").status_code == 200
            ended(mo, "2FA reset")
        # A stream of a session that ended before it opened never starts.
        dead = browser_cookie(server.url, "mo")
        with httpx.Client(base_url=server.url, cookies={auth.SESSION_COOKIE: dead}) as phone:
            phone.post("/logout", data={"csrf_token": form_csrf(phone.get("/").text)})
        late = SseReader(live_url, dead)
        assert late.ended.wait(15) and "hello" not in late.events and late.status in (303, 401)


def test_a_busy_session_still_ends_at_the_absolute_timeout(app_env: AppEnv) -> None:
    app_env.user("kit", "viewer")
    sign_in(app_env.client, "kit")
    assert app_env.client.get("/api/v1/me").status_code == 200
    hours = app_env.svc.settings.session_max_hours
    with app_env.svc.engine.begin() as conn:  # in use a minute ago, but signed in longer ago than session_max_hours
        sql.run(conn, "UPDATE sessions SET created_at = created_at - :seconds", seconds=hours * 3600 + 60)
    assert app_env.client.get("/api/v1/me").status_code == 401
    assert app_env.client.get("/").headers["location"].startswith("/login")
    assert not _stored_ids(app_env)
