"""Who may open a terminal: viewers and operators without the grant are refused, a stale proof asks for step-up, a device
without a pinned key or with a changed one is refused; every refused attempt is audited."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.auth.access import SESSION_COOKIE
from server.store import accounts, sessions
from tests.peers.sshd import SshdPeer
from tests.server.actions_helpers import ssh_device
from tests.server.conftest import bearer, form_csrf
from tests.server.terminal_helpers import ORIGIN, TermEnv, make_term_env, read_control, read_until


@pytest.fixture
def env(tmp_path: Path, sshd: SshdPeer) -> Iterator[TermEnv]:
    yield from make_term_env(tmp_path, sshd)


def _post(c: TestClient, device: int, reason: str = "looking at logs") -> tuple[int, str]:
    csrf = form_csrf(c.get("/account").text)
    r = c.post(f"/devices/{device}/terminal", data={"csrf_token": csrf, "reason": reason})
    return r.status_code, r.text


def test_viewers_are_refused(env: TermEnv) -> None:
    c = env.client_for("viewer")
    assert c.get(f"/devices/{env.device}/terminal").status_code == 403
    status, _ = _post(c, env.device)
    assert status == 403
    assert "Terminal" not in c.get(f"/devices/{env.device}").text


def test_an_operator_without_the_terminal_grant_is_refused_and_audited(env: TermEnv) -> None:
    c = env.client_for("operator")
    page = c.get(f"/devices/{env.device}").text
    assert "terminal permission" in page and f'href="/devices/{env.device}/terminal"' not in page
    status, text = _post(c, env.device)
    assert status == 403 and "terminal permission" in text
    refused = env.audit("terminal.refused")
    assert refused[0]["username"] == "operator" and refused[0]["target"] == "web-01"
    assert "terminal permission" in refused[0]["detail"]["why"]
    assert not env.audit("terminal.open")


def _grant(env: TermEnv, name: str, grants: list[str]) -> None:
    with env.svc.reader.connect() as conn:
        found = accounts.get_user_by_name(conn, name)
        assert found is not None
    r = env.client.patch(f"/api/v1/users/{found[0].id}", json={"grants": grants}, headers=bearer(env.admin_token))
    assert r.status_code == 200, r.text


def test_an_operator_granted_the_terminal_opens_one_and_a_revocation_ends_it(env: TermEnv) -> None:
    _grant(env, "operator", ["terminal"])
    c = env.client_for("operator")
    assert f'href="/devices/{env.device}/terminal"' in c.get(f"/devices/{env.device}").text
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"id -un\n")
        read_until(ws, b"pnoc-test")
    assert env.audit("terminal.open")[0]["username"] == "operator"
    _grant(env, "operator", [])  # revoked while the connection was down: the resume is refused and the session ends
    with c.websocket_connect(f"/terminal/ws?resume={ready['resume']}", headers=ORIGIN) as ws:
        assert "no longer hold" in read_control(ws, "error")["message"]
    assert env.audit("terminal.close")[0]["detail"]["reason"] == "permission revoked"


def test_a_stale_second_factor_asks_for_step_up_first(env: TermEnv) -> None:
    with env.svc.engine.begin() as conn:
        found = accounts.get_user_by_name(conn, "admin")
        assert found is not None
        cookie, _csrf = sessions.create(conn, found[0].id, "127.0.0.1", "test", sessions.FULL, time.time() - 3600)
    c = TestClient(env.client.app, follow_redirects=False, cookies={SESSION_COOKIE: cookie})
    c.portal = env.client.portal
    r = c.get(f"/devices/{env.device}/terminal")
    assert r.status_code == 303 and r.headers["location"].startswith("/account/verify")
    status, _ = _post(c, env.device)
    assert status == 303
    assert "second factor" in env.audit("terminal.refused")[0]["detail"]["why"]
    assert not env.audit("terminal.open")


def test_a_reason_is_required(env: TermEnv) -> None:
    status, text = _post(env.client_for("admin"), env.device, reason=" \x1b ")
    assert status == 422 and "say why" in text


def test_no_pinned_host_key_is_refused_never_trusted_on_first_use(env: TermEnv, sshd: SshdPeer) -> None:
    spec = ssh_device(sshd, name="unpinned")
    del spec["ssh"]["host_key"]
    r = env.client.post("/api/v1/devices", json=spec, headers=bearer(env.admin_token))
    assert r.status_code == 201, r.text
    status, text = _post(env.client_for("admin"), int(r.json()["id"]))
    assert status == 409 and "never trusts a key on first use" in text
    assert env.audit("terminal.refused")[0]["target"] == "unpinned"


def test_a_changed_host_key_is_refused_before_signing_in(env: TermEnv, sshd: SshdPeer) -> None:
    other = Path(sshd.rsa_key_path + ".pub").read_text().split()[:2]  # a real key, but not this server's
    spec = ssh_device(sshd, name="changed", ssh={"host_key": " ".join(other)})
    r = env.client.post("/api/v1/devices", json=spec, headers=bearer(env.admin_token))
    assert r.status_code == 201, r.text
    c = env.client_for("admin")
    ticket = env.ticket(c, device=int(r.json()["id"]))
    logins = sshd.count("Accepted publickey")
    with c.websocket_connect(f"/terminal/ws?ticket={ticket}", headers=ORIGIN) as ws:
        error = read_control(ws, "error")
    assert "host key mismatch" in error["message"]
    assert sshd.count("Accepted publickey") == logins  # no credential was offered to the impostor
    refused = env.audit("terminal.refused")
    assert refused[0]["target"] == "changed" and "host key mismatch" in refused[0]["detail"]["why"]
    assert not env.audit("terminal.open")
