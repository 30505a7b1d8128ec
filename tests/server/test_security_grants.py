"""Named permissions (grants): admins hold all, viewers none, operators what an admin stored; tokens act as their user."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from server.auth.grants import GRANTS, DirectoryUser, FreshTerminalUser, has_grant, holds
from server.auth.principal import Principal
from server.store import accounts
from tests.server.conftest import AppEnv, bearer, form_csrf
from tests.server.security_helpers import TotpClock, user_with_totp


@pytest.fixture
def guarded(app_env: AppEnv) -> AppEnv:
    """The app plus two probe routes: one needs the directory grant, one the terminal grant and step-up."""
    router = APIRouter()

    @router.get("/api/v1/probe/directory")
    def directory(p: DirectoryUser) -> dict[str, str]:
        return {"who": p.name}

    @router.post("/api/v1/probe/terminal")
    def terminal(p: FreshTerminalUser) -> dict[str, str]:
        return {"who": p.name}

    @router.get("/probe/directory")
    def directory_page(p: DirectoryUser) -> dict[str, str]:
        return {"who": p.name}

    app_env.app.include_router(router)
    return app_env


def _grant(env: AppEnv, admin: str, user_id: int, wanted: list[str]) -> dict[str, object]:
    response = env.client.patch(f"/api/v1/users/{user_id}", json={"grants": wanted}, headers=bearer(admin))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_the_rule_table() -> None:
    # role, stored grants -> holds "directory"
    table = [
        ("viewer", frozenset(GRANTS), False),  # a viewer never holds one, whatever a row says
        ("operator", frozenset(), False),
        ("operator", frozenset({"terminal"}), False),
        ("operator", frozenset({"directory"}), True),
        ("admin", frozenset(), True),  # admins hold every grant implicitly
    ]
    for role, stored, want in table:
        assert holds(role, stored, "directory") is want, (role, stored)
        assert has_grant(Principal(1, "x", role, "token", grants=stored), "directory") is want
    with pytest.raises(ValueError, match="unknown grant"):
        holds("admin", frozenset(), "root")


def test_a_viewer_and_an_operator_without_the_grant_are_refused(guarded: AppEnv) -> None:
    env = guarded
    admin = env.token("boss", "admin")
    viewer = env.token("vic", "viewer")
    operator = env.token("olga", "operator")
    olga = env.client.get("/api/v1/me", headers=bearer(operator)).json()
    assert olga["grants"] == []
    assert env.client.get("/api/v1/me", headers=bearer(admin)).json()["grants"] == list(GRANTS)

    refused = env.client.get("/api/v1/probe/directory", headers=bearer(viewer))
    assert refused.status_code == 403 and "operator role" in refused.json()["detail"]
    refused = env.client.get("/api/v1/probe/directory", headers=bearer(operator))
    assert refused.status_code == 403 and refused.json()["detail"].startswith("this needs the directory permission")
    page = env.client.get("/probe/directory", headers=bearer(operator))
    assert page.status_code == 403 and "directory permission" in page.text and "<html" in page.text.lower()
    assert env.client.get("/api/v1/probe/directory", headers=bearer(admin)).json() == {"who": "boss"}

    # Granted: the token acts with its user's grant at once (no new sign-in), and only that grant.
    shown = _grant(env, admin, olga["id"], ["directory"])
    assert shown["grants"] == ["directory"]
    assert env.client.get("/api/v1/probe/directory", headers=bearer(operator)).json() == {"who": "olga"}
    assert env.client.post("/api/v1/probe/terminal", headers=bearer(operator)).status_code == 403
    _grant(env, admin, olga["id"], ["directory", "terminal"])
    assert env.client.post("/api/v1/probe/terminal", headers=bearer(operator)).json() == {"who": "olga"}

    # Revoked: refused again on the next request.
    _grant(env, admin, olga["id"], ["terminal"])
    assert env.client.get("/api/v1/probe/directory", headers=bearer(operator)).status_code == 403

    # Only admins change grants, and an operator cannot grant themselves anything.
    mine = env.client.patch(f"/api/v1/users/{olga['id']}", json={"grants": list(GRANTS)}, headers=bearer(operator))
    assert mine.status_code == 403
    with env.svc.reader.connect() as conn:
        log = [(e["action"], e["target"], e["detail"]) for e in accounts.read_audit(conn, 10)]
    assert ("user.revoke", "olga", {"grant": "directory"}) in log
    assert ("user.grant", "olga", {"grant": "terminal"}) in log
    assert [a for a, _, _ in log].count("user.grant") == 2


def test_viewers_hold_none_and_demotion_drops_them(guarded: AppEnv) -> None:
    env = guarded
    admin = env.token("boss", "admin")
    viewer_id = env.user("vera", "viewer")
    refused = env.client.patch(f"/api/v1/users/{viewer_id}", json={"grants": ["directory"]}, headers=bearer(admin))
    assert refused.status_code == 409 and "viewer" in refused.json()["detail"]
    unknown = env.client.patch(f"/api/v1/users/{viewer_id}", json={"grants": ["root"]}, headers=bearer(admin))
    assert unknown.status_code == 422

    operator = env.token("otto", "operator")
    otto = env.client.get("/api/v1/me", headers=bearer(operator)).json()["id"]
    _grant(env, admin, otto, list(GRANTS))
    demoted = env.client.patch(f"/api/v1/users/{otto}", json={"role": "viewer"}, headers=bearer(admin))
    assert demoted.json()["grants"] == []
    promoted = env.client.patch(f"/api/v1/users/{otto}", json={"role": "operator"}, headers=bearer(admin))
    assert promoted.json()["grants"] == []  # a promotion starts from none
    listed = {u["name"]: u["grants"] for u in env.client.get("/api/v1/users", headers=bearer(admin)).json()["items"]}
    assert listed == {"boss": list(GRANTS), "vera": [], "otto": []}
    with env.svc.reader.connect() as conn:
        entries = accounts.read_audit(conn, 10)
    role_change = next(e for e in entries if e["action"] == "user.role" and e["detail"]["to"] == "viewer")
    assert role_change["detail"]["grants_dropped"] == list(GRANTS)


def test_admins_grant_from_the_users_page(guarded: AppEnv, clock: TotpClock) -> None:
    env = guarded
    client, _, _ = user_with_totp(env, "root", "admin", clock)
    olga = env.user("olga", "operator")
    page = client.get(f"/admin/users/{olga}")
    assert page.status_code == 200 and 'name="grant" value="directory"' in page.text
    csrf = form_csrf(page.text)
    no_csrf = client.post(f"/admin/users/{olga}/grants", data={"grant": ["directory"]})
    assert no_csrf.status_code == 403
    saved = client.post(f"/admin/users/{olga}/grants", data={"grant": ["directory", "terminal"], "csrf_token": csrf})
    assert saved.status_code == 303
    shown = client.get(f"/admin/users/{olga}").text
    assert "directory, terminal" in shown and 'value="terminal" checked' in shown
    cleared = client.post(f"/admin/users/{olga}/grants", data={"csrf_token": csrf})  # no box ticked: none held
    assert cleared.status_code == 303
    assert client.get(f"/api/v1/users/{olga}").json()["grants"] == []
    vera = env.user("vera", "viewer")
    viewer_page = client.get(f"/admin/users/{vera}")
    assert 'name="grant"' not in viewer_page.text  # no boxes for a viewer
    refused = client.post(f"/admin/users/{vera}/grants", data={"grant": ["directory"], "csrf_token": csrf})
    assert refused.status_code == 409 and "viewer" in refused.text
    # A session signed in as the operator sees the grant without signing in again.
    env.client.cookies.clear()
    client.post(f"/admin/users/{olga}/grants", data={"grant": ["directory"], "csrf_token": csrf})
    operator = TestClient(env.app, follow_redirects=False)
    from tests.server.conftest import sign_in

    sign_in(operator, "olga")
    assert operator.get("/api/v1/probe/directory").json() == {"who": "olga"}
