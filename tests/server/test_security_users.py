"""User management from the phone: list, create, change role, disable/enable, reset 2FA; guarded and step-up protected."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.server.conftest import PASSWORD, AppEnv, bearer, form_csrf, sign_in
from tests.server.security_helpers import (
    SECRET_RE,
    TotpClock,
    login_password,
    second_step,
    user_with_totp,
)


def test_admins_manage_users_through_the_api(app_env: AppEnv) -> None:
    admin = app_env.token("chief", "admin")
    created = app_env.client.post(
        "/api/v1/users", json={"name": "nia", "role": "viewer", "password": "p" * 12}, headers=bearer(admin)
    )
    assert created.status_code == 201
    user_id = created.json()["id"]
    shown = app_env.client.get(f"/api/v1/users/{user_id}", headers=bearer(admin)).json()
    assert shown == {
        "id": user_id,
        "name": "nia",
        "role": "viewer",
        "disabled": False,
        "grants": [],
        "totp": False,
        "passkeys": 0,
        "recovery_codes_left": 0,
        "sessions": 0,
    }
    assert "password" not in str(app_env.client.get("/api/v1/users", headers=bearer(admin)).json())
    promoted = app_env.client.patch(f"/api/v1/users/{user_id}", json={"role": "operator"}, headers=bearer(admin))
    assert promoted.json()["role"] == "operator"
    assert app_env.client.patch(f"/api/v1/users/{user_id}", json={"role": "root"}, headers=bearer(admin)).status_code == 422
    assert app_env.client.patch(f"/api/v1/users/{user_id}", json={"name": "x"}, headers=bearer(admin)).status_code == 422
    assert app_env.client.patch("/api/v1/users/9999", json={"disabled": True}, headers=bearer(admin)).status_code == 404
    assert app_env.client.post("/api/v1/users/9999/reset-2fa", headers=bearer(admin)).status_code == 404
    viewer = app_env.token("peon", "viewer")
    assert app_env.client.patch(f"/api/v1/users/{user_id}", json={"disabled": True}, headers=bearer(viewer)).status_code == 403


def test_nobody_locks_out_themselves_or_the_last_admin(app_env: AppEnv) -> None:
    admin = app_env.token("solo", "admin")
    me = app_env.client.get("/api/v1/me", headers=bearer(admin)).json()["id"]
    assert app_env.client.patch(f"/api/v1/users/{me}", json={"disabled": True}, headers=bearer(admin)).status_code == 409
    assert app_env.client.patch(f"/api/v1/users/{me}", json={"role": "viewer"}, headers=bearer(admin)).status_code == 409
    second = app_env.client.post(
        "/api/v1/users", json={"name": "duo", "role": "admin", "password": "p" * 12}, headers=bearer(admin)
    )
    duo = second.json()["id"]
    assert app_env.client.patch(f"/api/v1/users/{duo}", json={"disabled": True}, headers=bearer(admin)).status_code == 200
    # duo is disabled, so solo is the last enabled admin; duo's token could not act anyway.
    assert app_env.client.patch(f"/api/v1/users/{duo}", json={"disabled": False}, headers=bearer(admin)).status_code == 200


def test_admins_manage_users_from_the_pages(app_env: AppEnv, clock: TotpClock) -> None:
    client, _, _ = user_with_totp(app_env, "root", "admin", clock)
    page = client.get("/admin/users")
    made = client.post(
        "/admin/users", data={"name": "zed", "role": "operator", "password": "", "csrf_token": form_csrf(page.text)}
    )
    assert made.status_code == 201 and "Password (shown once)" in made.text
    bad = client.post(
        "/admin/users", data={"name": "bad name!", "role": "viewer", "password": "", "csrf_token": form_csrf(page.text)}
    )
    assert bad.status_code == 422
    zed_id = next(u["id"] for u in client.get("/api/v1/users").json()["items"] if u["name"] == "zed")
    detail = client.get(f"/admin/users/{zed_id}")
    assert detail.status_code == 200 and "Reset two-factor" in detail.text
    assert client.get("/admin/users/9999").status_code == 404
    response = client.post(f"/admin/users/{zed_id}/role", data={"role": "admin", "csrf_token": form_csrf(detail.text)})
    assert response.status_code == 303
    assert "admin" in client.get(f"/admin/users/{zed_id}").text


def test_a_lost_phone_is_fixed_by_an_admin_reset(app_env: AppEnv, clock: TotpClock) -> None:
    _, secret, _ = user_with_totp(app_env, "lou", "operator", clock)
    admin = app_env.token("boss", "admin")
    lou = TestClient(app_env.app, follow_redirects=False)
    assert login_password(lou, "lou").startswith("/login/2fa")
    assert second_step(lou, clock.code(secret)) == 303
    lou_id = lou.get("/api/v1/me").json()["id"]
    reset = app_env.client.post(f"/api/v1/users/{lou_id}/reset-2fa", headers=bearer(admin))
    assert reset.status_code == 200 and reset.json()["totp"] is False
    assert lou.get("/api/v1/me").status_code == 401
    assert login_password(lou, "lou") == "/"  # no second factor any more: set up a new one next
    assert SECRET_RE.pattern


def test_the_cli_resets_2fa_for_a_locked_out_admin(tmp_path: object, clock: TotpClock) -> None:
    from pathlib import Path

    from server.config.settings import Settings
    from server.web.app import create_app
    from tests.server.conftest import run_cli

    data = Path(str(tmp_path)) / "data"
    app = create_app(Settings(data_dir=data, writer_batch_seconds=0.05), poll=False)
    with TestClient(app, follow_redirects=False) as client:
        env = AppEnv(app, client, app.state.services)
        user_with_totp(env, "admin1", "admin", clock)
    result = run_cli("user", "reset-2fa", "admin1", "--data-dir", data)
    assert result.returncode == 0, result.stderr
    app = create_app(Settings(data_dir=data, writer_batch_seconds=0.05), poll=False)
    with TestClient(app, follow_redirects=False) as client:
        assert login_password(client, "admin1", PASSWORD) == "/"
        sign_in(client, "admin1")
