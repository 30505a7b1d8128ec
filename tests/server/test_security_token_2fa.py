"""An API token never manages its owner's second factors (a stolen viewer token must not lock its owner out):
pages and API alike refuse it with 409, and every route whose gate is declared session-only does."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute

from server.auth.policy import policies_of
from tests import sql
from tests.server.conftest import AppEnv, bearer
from tests.server.security_helpers import TotpClock, user_with_totp

SESSION_ONLY = "this needs a signed-in browser session, not an API token"


def _walk(routes: list[Any]) -> list[APIRoute]:
    out: list[APIRoute] = []
    for route in routes:
        if hasattr(route, "original_router"):
            out += _walk(route.original_router.routes)
        elif isinstance(route, APIRoute):
            out.append(route)
    return out


def _second_factors(env: AppEnv, name: str) -> tuple[object, object, int, int]:
    with env.svc.reader.connect() as conn:
        row = sql.one(conn, "SELECT id, totp_secret, totp_pending FROM users WHERE name = :name", name=name)
        codes = sql.scalar(conn, "SELECT count(*) FROM recovery_codes WHERE user_id = :u", u=row.id)
        audited = sql.scalar(conn, "SELECT count(*) FROM audit")
    return row.totp_secret, row.totp_pending, int(codes or 0), int(audited or 0)


def test_a_viewer_token_cannot_put_a_second_factor_on_its_owner_through_the_pages(app_env: AppEnv) -> None:
    token = app_env.token("vic", "viewer")
    before = _second_factors(app_env, "vic")
    auth = bearer(token)
    for method, path, data in (
        ("POST", "/account/totp/start", {}),
        ("GET", "/account/totp", None),
        ("POST", "/account/totp/confirm", {"code": "123456"}),
        ("GET", "/account/recovery", None),
        ("POST", "/account/recovery", {}),
        ("GET", "/account/passkeys", None),
        ("GET", "/account/enrol", None),
    ):
        response = app_env.client.request(method, path, data=data, headers=auth)
        assert response.status_code == 409, (path, response.status_code, response.text[:300])
        assert SESSION_ONLY in response.text
        assert "otpauth://" not in response.text
    assert _second_factors(app_env, "vic") == before  # nothing started, nothing made, nothing audited


def test_a_token_cannot_remove_or_renew_its_owners_second_factors(app_env: AppEnv, clock: TotpClock) -> None:
    user_with_totp(app_env, "wes", "operator", clock)
    token = app_env.token("wes")
    before = _second_factors(app_env, "wes")
    assert before[0] is not None and before[2] == 10
    for method, path in (
        ("POST", "/account/totp/remove"), ("POST", "/account/recovery"), ("POST", "/account/passkeys/1/remove"),
        ("DELETE", "/api/v1/account/totp"), ("POST", "/api/v1/account/recovery-codes"),
        ("DELETE", "/api/v1/account/passkeys/1"),
    ):
        response = app_env.client.request(method, path, headers=bearer(token))
        assert response.status_code == 409, (path, response.status_code, response.text[:300])
        assert SESSION_ONLY in response.text
    assert _second_factors(app_env, "wes") == before


def test_every_session_only_gate_refuses_a_token(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    gated = [r for r in _walk(app_env.app.routes) if any(p.session for p in policies_of(r))]
    paths = {r.path for r in gated}
    assert {"/account/totp/start", "/account/totp/remove", "/account/recovery", "/account/passkeys/{passkey_id}/remove",
            "/api/v1/account/totp", "/api/v1/account/recovery-codes"} <= paths
    for route in gated:
        for method in sorted(route.methods - {"HEAD"}):
            path = route.path.replace("{passkey_id}", "999999")
            response = app_env.client.request(method, path, headers=bearer(token))
            assert response.status_code == 409, (method, path, response.status_code, response.text[:300])
