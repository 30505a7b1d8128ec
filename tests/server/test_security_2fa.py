"""Two-factor sign-in: TOTP enrolment, the half-session, code replay, recovery codes, forced enrolment, step-up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.auth import totp
from server.config.settings import Settings
from server.store import twofactor
from server.store.devices import load_device
from tests import sql
from tests.server.conftest import PASSWORD, AppEnv, bearer, clean_env, form_csrf, make_app_env, sign_in
from tests.server.security_helpers import (
    TotpClock,
    login_password,
    second_step,
    session_cookie,
    user_with_totp,
)


@dataclass(frozen=True)
class Enrolled:
    """One TOTP enrolment made through the pages: its sealed secret, the secret, the recovery codes and their hashes."""

    sealed: bytes
    secret: str
    codes: list[str]
    hashes: list[str]
    key_file: Path


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory: pytest.TempPathFactory) -> Enrolled:
    """Enrol once per module (ten argon2 hashes of recovery codes take seconds); the apps of this module's tests share
    its key file, so `totp_user` can give a new user this enrolment as it is stored."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("enrolled") / "data", writer_batch_seconds=0.05)
    with clean_env() as patch:
        state = TotpClock(now=(time.time() // totp.STEP) * totp.STEP + 15)
        patch.setattr(totp, "clock", lambda: state.now)
        for env in make_app_env(settings):
            _, secret, codes = user_with_totp(env, "template", "viewer", state)
            with env.svc.reader.connect() as conn:
                sealed = sql.one(conn, "SELECT totp_secret FROM users WHERE name = 'template'")[0]
                hashes = sql.scalars(conn, "SELECT code_hash FROM recovery_codes ORDER BY id")
    return Enrolled(bytes(sealed), secret, codes, list(hashes), settings.key_file)


@pytest.fixture
def settings(tmp_path: Path, enrolled: Enrolled) -> Settings:
    """The suite's settings (tests/server/conftest.py), with the key file the module's enrolment was sealed with."""
    return Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, secret_key_file=enrolled.key_file)


def totp_user(env: AppEnv, name: str, role: str, clock: TotpClock, enrolled: Enrolled) -> tuple[TestClient, str, list[str]]:
    """As user_with_totp (a new user with TOTP, signed in on a client of their own: client, secret, recovery codes),
    the enrolment stored as the pages store it (the first test enrols through the pages) instead of made again."""
    user_id = env.user(name, role)
    client = TestClient(env.app, follow_redirects=False)
    assert login_password(client, name) == "/"
    with env.svc.engine.begin() as conn:
        twofactor.confirm_totp(conn, user_id, enrolled.sealed, int(clock.now // totp.STEP))  # the confirming code's step
        twofactor.replace_recovery_codes(conn, user_id, enrolled.hashes)
    clock.advance()
    return client, enrolled.secret, list(enrolled.codes)


def test_totp_enrolment_stores_the_secret_sealed_and_codes_hashed(app_env: AppEnv, clock: TotpClock) -> None:
    _, secret, codes = user_with_totp(app_env, "ana", "operator", clock)
    with app_env.svc.reader.connect() as conn:
        row = sql.one(conn, "SELECT totp_secret, totp_pending FROM users WHERE name = 'ana'")
        stored = sql.scalars(conn, "SELECT code_hash FROM recovery_codes")
    assert row.totp_pending is None
    assert secret.encode() not in bytes(row.totp_secret)
    assert len(stored) == 10
    assert all(h.startswith("$argon2id$") for h in stored)
    assert not {c.replace("-", "") for c in codes} & {h for h in stored}


def test_sign_in_with_totp_needs_the_second_step(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    first, secret, _ = totp_user(app_env, "ben", "viewer", clock, enrolled)
    client = TestClient(app_env.app, follow_redirects=False)
    assert login_password(client, "ben", next_url="/devices/1") == "/login/2fa?next=/devices/1"
    half = session_cookie(client)
    # The half-session can do nothing but the second step: pages redirect to it, the API says 401.
    page = client.get("/")
    assert page.status_code == 303 and page.headers["location"].startswith("/login/2fa")
    assert client.get("/api/v1/devices").status_code == 401
    assert client.get("/account").status_code == 303
    assert second_step(client, clock.code(secret), next_url="/account") == 303
    assert session_cookie(client) != half  # a new session id after the second factor
    assert client.get("/account").status_code == 200
    with app_env.svc.reader.connect() as conn:
        stages = sql.scalars(conn, "SELECT stage FROM sessions")
    assert sorted(stages) == ["full", "full"]  # the half-session is gone
    assert first.get("/account").status_code == 200


def test_a_totp_code_works_only_once(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    _, secret, _ = totp_user(app_env, "cid", "viewer", clock, enrolled)
    code = clock.code(secret)
    one = TestClient(app_env.app, follow_redirects=False)
    login_password(one, "cid")
    assert second_step(one, code) == 303
    two = TestClient(app_env.app, follow_redirects=False)
    login_password(two, "cid")
    assert second_step(two, code) == 401  # replay of the same code, same step
    assert second_step(two, clock.code(secret, offset=-1)) == 401  # an older step than one already used
    clock.advance()
    assert second_step(two, clock.code(secret)) == 303


def test_recovery_codes_work_once_each(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    _, _, codes = totp_user(app_env, "dia", "viewer", clock, enrolled)
    one = TestClient(app_env.app, follow_redirects=False)
    login_password(one, "dia")
    assert second_step(one, codes[0].upper()) == 303  # case does not matter
    two = TestClient(app_env.app, follow_redirects=False)
    login_password(two, "dia")
    assert second_step(two, codes[0]) == 401
    assert second_step(two, codes[1].replace("-", "")) == 303
    with app_env.svc.reader.connect() as conn:
        used = sql.scalar(conn, "SELECT count(*) FROM recovery_codes WHERE used_at IS NOT NULL")
    assert used == 2


def test_wrong_codes_end_the_half_session_and_slow_down_that_address(
    app_env: AppEnv, clock: TotpClock, enrolled: Enrolled
) -> None:
    _, secret, _ = totp_user(app_env, "eve", "viewer", clock, enrolled)
    client = TestClient(app_env.app, follow_redirects=False)
    login_password(client, "eve")
    for _ in range(4):
        assert second_step(client, "000000") == 401
    page = client.get("/login/2fa")
    last = client.post("/login/2fa", data={"code": "000001", "csrf_token": form_csrf(page.text), "next": "/"})
    assert last.status_code == 303 and last.headers["location"].startswith("/login")
    assert client.get("/login/2fa").status_code == 303  # that half-session is over
    with app_env.svc.reader.connect() as conn:
        failures = sql.scalar(conn, "SELECT count(*) FROM login_attempts WHERE ok = false AND username = 'eve'")
    assert failures == 5
    # Five failures from this address slow this address down for eve (growing delays), not eve herself:
    page = client.get("/login")
    refused = client.post("/login", data={"username": "eve", "password": PASSWORD, "csrf_token": form_csrf(page.text)})
    assert refused.status_code == 429
    elsewhere = TestClient(app_env.app, follow_redirects=False, client=("198.51.100.20", 40000))
    login_password(elsewhere, "eve")
    assert second_step(elsewhere, clock.code(secret)) == 303


def test_the_second_step_checks_csrf(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    _, secret, _ = totp_user(app_env, "fay", "viewer", clock, enrolled)
    client = TestClient(app_env.app, follow_redirects=False)
    login_password(client, "fay")
    response = client.post("/login/2fa", data={"code": clock.code(secret), "csrf_token": "forged", "next": "/"})
    assert response.status_code == 403


def test_a_half_session_expires_quickly(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    _, secret, _ = totp_user(app_env, "gus", "viewer", clock, enrolled)
    client = TestClient(app_env.app, follow_redirects=False)
    login_password(client, "gus")
    sql.run(app_env.svc.engine, "UPDATE sessions SET created_at = created_at - 301 WHERE stage = '2fa'")
    assert client.get("/login/2fa").status_code == 303
    assert second_step_status_without_page(client, clock.code(secret)) == 303


def second_step_status_without_page(client: TestClient, code: str) -> int:
    return client.post("/login/2fa", data={"code": code, "csrf_token": "x", "next": "/"}).status_code


@pytest.fixture
def enforcing(tmp_path: Path) -> Iterator[AppEnv]:
    """An app where operators and admins must use 2FA."""
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, require_2fa_roles=["operator", "admin"])
    yield from make_app_env(settings)


def test_required_roles_must_enrol_at_next_sign_in(enforcing: AppEnv, clock: TotpClock) -> None:
    enforcing.user("viv", "viewer")
    enforcing.user("opa", "operator")
    viewer = TestClient(enforcing.app, follow_redirects=False)
    assert login_password(viewer, "viv") == "/"
    client = enforcing.client
    assert login_password(client, "opa", next_url="/devices/1") == "/account/enrol?next=/devices/1"
    assert client.get("/").headers["location"].startswith("/account/enrol")
    assert client.get("/api/v1/devices").status_code == 401
    assert client.get("/account/enrol").status_code == 200
    page = client.get("/account/totp")
    assert page.status_code == 200
    client.post("/account/totp/start", data={"csrf_token": form_csrf(page.text)})
    page = client.get("/account/totp")
    from tests.server.security_helpers import SECRET_RE

    found = SECRET_RE.search(page.text)
    assert found is not None
    secret = found.group(1).replace(" ", "")
    enrol_cookie = session_cookie(client)
    done = client.post("/account/totp/confirm", data={"code": clock.code(secret), "csrf_token": form_csrf(page.text)})
    assert done.status_code == 200 and "shown only this once" in done.text
    assert session_cookie(client) != enrol_cookie
    assert client.get("/").status_code == 200  # now a full session


def test_step_up_asks_again_after_stepup_minutes(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    client, secret, _ = totp_user(app_env, "hal", "admin", clock, enrolled)
    assert client.get("/admin/users").status_code == 200
    sql.run(app_env.svc.engine, "UPDATE sessions SET verified_at = verified_at - :ago", ago=11 * 60)
    stale = client.get("/admin/users")
    assert stale.status_code == 303 and stale.headers["location"] == "/account/verify?next=/admin/users"
    api = client.post(
        "/api/v1/users",
        json={"name": "x1", "role": "viewer", "password": "p" * 12},
        headers={"X-CSRF-Token": form_csrf(client.get("/account").text)},
    )
    assert api.status_code == 403 and api.json()["stepup"] == "/account/verify"
    page = client.get("/account/verify?next=/admin/users")
    wrong = client.post("/account/verify", data={"code": "123456", "next": "/admin/users", "csrf_token": form_csrf(page.text)})
    assert wrong.status_code == 403
    ok = client.post(
        "/account/verify", data={"code": clock.code(secret), "next": "/admin/users", "csrf_token": form_csrf(page.text)}
    )
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/users"
    assert client.get("/admin/users").status_code == 200


def test_step_up_without_2fa_takes_the_password(app_env: AppEnv) -> None:
    app_env.user("ivy", "admin")
    sign_in(app_env.client, "ivy")
    sql.run(app_env.svc.engine, "UPDATE sessions SET verified_at = verified_at - :ago", ago=3600)
    assert app_env.client.get("/account/password").status_code == 303
    page = app_env.client.get("/account/verify")
    assert 'name="password"' in page.text
    ok = app_env.client.post(
        "/account/verify",
        data={"password": "correct horse battery", "next": "/account/password", "csrf_token": form_csrf(page.text)},
    )
    assert ok.status_code == 303
    assert app_env.client.get("/account/password").status_code == 200


def test_bearer_tokens_need_no_step_up(app_env: AppEnv) -> None:
    token = app_env.token("jon", "admin")
    created = app_env.client.post(
        "/api/v1/users", json={"name": "kim", "role": "viewer", "password": "p" * 12}, headers=bearer(token)
    )
    assert created.status_code == 201


def test_changing_device_credentials_asks_for_step_up(app_env: AppEnv, clock: TotpClock, enrolled: Enrolled) -> None:
    admin_token = bearer(app_env.token("root", "admin"))
    spec = {"name": "sw9", "address": "192.0.2.9", "snmp": {"community": "old-community"}}
    device = app_env.client.post("/api/v1/devices", json=spec, headers=admin_token).json()["id"]
    client, secret, _ = totp_user(app_env, "kai", "admin", clock, enrolled)
    csrf = {"X-CSRF-Token": form_csrf(client.get("/account").text)}
    sql.run(app_env.svc.engine, "UPDATE sessions SET verified_at = verified_at - :ago", ago=11 * 60)
    url = f"/api/v1/devices/{device}"
    # Tags are not credentials: no step-up.
    assert client.patch(url, json={"tags": ["core"]}, headers=csrf).status_code == 200
    changes = [{"snmp": {"community": "new-community"}}, {"snmp": {"write": {"community": "w"}}}]
    changes.append({"ssh": {"user": "x", "password": "p4ssw0rd"}})
    changes.append({"address": "198.51.100.66"})  # moved: its next poll would send the community there
    for change in changes:
        refused = client.patch(url, json=change, headers=csrf)
        assert refused.status_code == 403 and refused.json()["stepup"] == "/account/verify", (change, refused.text)
    # The edit form goes through the same logic and sends the browser to confirm it is you.
    page = client.get(f"/admin/devices/{device}")
    form = {"csrf_token": form_csrf(page.text), "name": "sw9", "address": "192.0.2.9", "tags": "core", "enabled": "on"}
    form |= {"snmp_version": "2c", "snmp_port": "161", "snmp_community": ""}  # empty: keep the stored community
    same = client.post(f"/admin/devices/{device}", data={**form, "tags": "core edge"})
    assert same.status_code == 303 and same.headers["location"].endswith("done=saved"), same.text
    form["snmp_community"] = "form-community"
    r = client.post(f"/admin/devices/{device}", data=form)
    assert r.status_code == 303 and r.headers["location"].startswith("/account/verify"), r.text
    with app_env.svc.reader.connect() as conn:
        stored = load_device(conn, app_env.svc.box, device)
    assert stored is not None and stored.spec.snmp is not None and stored.spec.snmp.community == "old-community"
    # Confirmed with a code: the change goes through; a bearer token (made on the server's command line) needs none.
    page = client.get("/account/verify")
    client.post("/account/verify", data={"code": clock.code(secret), "next": "/", "csrf_token": form_csrf(page.text)})
    assert client.patch(url, json={"snmp": {"community": "new-community"}}, headers=csrf).status_code == 200
    assert app_env.client.patch(url, json={"snmp": {"community": "token-community"}}, headers=admin_token).status_code == 200
