"""Stored XSS and template injection: hostile text from devices (a real hostile SNMP agent, then every stored string
poisoned) and from names is shown as text, never as markup or template code."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.config.settings import Settings
from server.store import alerts as alerts_store
from server.store import twofactor
from server.store.metrics import labels_key
from server.web.app import create_app
from tests import sql
from tests.peers.hostile_agent import hostile_agent
from tests.server.conftest import AppEnv, bearer, sign_in

PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'><svg/onload=alert(3)>{{7*7}}{% raw %}"
# Markup that would run or render if it reached the page unescaped (escaped, it reads "&lt;script&gt;").
RAW_MARKUP = re.compile(r"<script>alert|<img src=x|<svg/onload|<i>basement|\}\}<b>|<b>.?\[2J", re.IGNORECASE)


@pytest.fixture
def nasty_agent() -> Iterator[int]:
    """The hostile SNMP agent (HTML, escapes, bad UTF-8 in every string) on its own loop; yields its port."""
    ready = threading.Event()
    stop = threading.Event()
    port: list[int] = []

    async def serve() -> None:
        async with hostile_agent("nasty") as agent:
            port.append(agent.port)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield port[0]
    stop.set()
    thread.join(30)


def _poison(value: Any) -> Any:
    if isinstance(value, str):
        return PAYLOAD
    if isinstance(value, list):
        return [_poison(v) for v in value]
    if isinstance(value, dict):
        return {k: _poison(v) for k, v in value.items()}
    return value


def _assert_inert(where: str, html: str) -> None:
    found = RAW_MARKUP.search(html)
    assert found is None, f"{where}: raw markup {found.group()!r} in {html[max(0, found.start() - 200) : found.end() + 50]!r}"


def test_hostile_device_strings_are_escaped_everywhere(tmp_path: Path, nasty_agent: int) -> None:
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, snmp_timeout=2.0, snmp_retries=0)
    app = create_app(settings, poll=True)
    with TestClient(app, follow_redirects=False) as client:
        env = AppEnv(app, client, app.state.services)
        token = env.token("root", "admin")
        made = client.post(
            "/api/v1/devices",
            json={"name": "evil", "address": "127.0.0.1", "snmp": {"port": nasty_agent, "community": "public"}},
            headers=bearer(token),
        )
        device_id = made.json()["id"]
        assert client.post(f"/api/v1/devices/{device_id}/poll", headers=bearer(token)).status_code == 200
        detail = client.get(f"/api/v1/devices/{device_id}", headers=bearer(token)).json()
        assert "<script>" in str(detail["facts"].get("sys_descr")), "the hostile agent's text was stored as sent"
        env.user("viewer1", "viewer")
        sign_in(client, "viewer1")
        for url in ("/", f"/devices/{device_id}", "/?q=evil"):
            page = client.get(url)
            assert page.status_code == 200
            _assert_inert(url, page.text)
            if url.startswith("/devices/"):
                assert "&lt;script&gt;alert" in page.text


def test_every_stored_device_string_is_escaped(app_env: AppEnv) -> None:
    token = app_env.token("root", "admin")
    parent = app_env.client.post("/api/v1/devices", json={"name": "p1", "address": "192.0.2.1"}, headers=bearer(token)).json()
    child = app_env.client.post(
        "/api/v1/devices", json={"name": "c1", "address": "192.0.2.2", "parent": "p1", "tags": ["t1"]}, headers=bearer(token)
    ).json()
    facts = {
        k: "x"
        for k in (
            "sys_name",
            "sys_descr",
            "sys_location",
            "sys_contact",
            "hostname",
            "os",
            "kernel",
            "kind",
            "ssh_host_key_offered",
            "ssh_host_key_fingerprint",
            "ssh_host_key_problem",
        )
    }
    tables = {
        "interfaces": [{"index": "1", "name": "x", "alias": "x", "oper": "x", "admin": "x", "type": "x"}],
        "storage": [{"descr": "x", "type": "fixed", "used_pct": 50, "size_bytes": 10}],
        "filesystems": [{"mount": "x", "used_pct": 50, "size_bytes": 10, "inodes_used_pct": 5}],
        "supplies": [{"descr": "x", "pct": 10}],
        "commands": [{"name": "x", "status": "x", "value": "x", "output": "x"}],
        "failed_units": [{"unit": "x"}],
    }
    checks = {
        "snmp": {
            "ok": False,
            "kind": "x",
            "ts": 1.0,
            "ms": 1,
            "error": "x",
            "facts": {"http_final_url": "x", "tls_not_after": "x"},
        }
    }
    with app_env.svc.engine.begin() as conn:
        sql.update(
            conn,
            "device_status",
            "device_id = :d",
            {
                "state": "down",
                "facts": _poison(facts),
                "tables": _poison(tables),
                "checks": _poison(checks),
                "last_error": PAYLOAD,
                "metrics": {"snmp": [["cpu_pct", {}, 5.0]]},
            },
            d=child["id"],
        )
        sql.insert(conn, "state_events", device_id=child["id"], ts=1.0, old_state="up", new_state="down", reason=PAYLOAD)
        # Names that predate validation (or came in another way) are text too, template syntax included.
        sql.update(conn, "devices", "id = :d", {"name": "{{7*7}}<b>", "tags": ["{{7*7}}"]}, d=parent["id"])
        sql.update(conn, "users", "name = :n", {"name": "{{7*7}}<i>basement"}, n="root")
    app_env.user("adm", "admin")
    sign_in(app_env.client, "adm")
    for url in ("/", f"/devices/{child['id']}", f"/devices/{parent['id']}", "/admin/audit", "/account"):
        page = app_env.client.get(url)
        assert page.status_code == 200, url
        _assert_inert(url, page.text)
    admin_list = app_env.client.get("/admin/users")
    _assert_inert("/admin/users", admin_list.text)
    assert "{{7*7}}&lt;i&gt;basement" in admin_list.text
    assert "{{7*7}}&lt;b&gt;" in app_env.client.get("/").text


def test_template_syntax_is_refused_in_new_names(app_env: AppEnv) -> None:
    token = app_env.token("root2", "admin")
    for name in ("{{7*7}}", "{%print(1)%}", "<b>x</b>"):
        device = app_env.client.post("/api/v1/devices", json={"name": name, "address": "192.0.2.9"}, headers=bearer(token))
        assert device.status_code == 422
        user = app_env.client.post(
            "/api/v1/users", json={"name": name, "role": "viewer", "password": "p" * 12}, headers=bearer(token)
        )
        assert user.status_code == 422
    with app_env.svc.reader.connect() as conn:
        assert not sql.rows(conn, "SELECT name FROM users WHERE name LIKE :pattern", pattern="%{%")


def test_alert_silence_and_run_pages_escape_stored_text(app_env: AppEnv) -> None:
    """Alerts (title, labels, history, notes), silences and action runs (device name, reason, command, output, error,
    verification) carry device- and user-sourced text: every page that shows them shows it as text."""
    token = app_env.token("root", "admin")
    device = app_env.client.post("/api/v1/devices", json={"name": "d1", "address": "192.0.2.3"}, headers=bearer(token)).json()
    now = time.time()
    with app_env.svc.engine.begin() as conn:
        sql.update(conn, "devices", "id = :d", {"name": "{{7*7}}<b>dev"}, d=device["id"])
        key = labels_key({"trap": PAYLOAD, "interface": PAYLOAD})
        alerts_store.fire_event_alert(conn, "trap", device["id"], key, "critical", PAYLOAD, now, PAYLOAD)
        alert_id = int(sql.one(conn, "SELECT id FROM alerts").id)
        alerts_store.acknowledge(conn, alert_id, "{{7*7}}<i>basement", PAYLOAD)
        alerts_store.add_note(conn, alert_id, "root", PAYLOAD)
        window = {"comment": PAYLOAD, "tag": "t<b>", "starts_at": now - 60, "ends_at": now + 3600}
        alerts_store.create_silence(conn, window, PAYLOAD[:64])
        run_id = sql.insert(
            conn,
            "action_runs",
            returning="id",
            action_id="restart-service",
            title="Restart",
            kind="ssh",
            danger="low",
            device_id=device["id"],
            device_name="{{7*7}}<b>dev",
            alert_id=alert_id,
            username="{{7*7}}<i>basement",
            reason=PAYLOAD,
            params={"unit": PAYLOAD},
            command=PAYLOAD,
            status="failed",
            exit_code=1,
            error=PAYLOAD,
            output=[["stdout", PAYLOAD], ["stderr", PAYLOAD]],
            truncated=False,
            started_at=now,
            finished_at=now + 1,
            duration=1.0,
            verification="failing",
            verification_detail=PAYLOAD,
            verified_at=now + 2,
        )
    app_env.user("adm", "admin")
    sign_in(app_env.client, "adm")
    urls = ["/alerts", f"/alerts/{alert_id}", "/silences", f"/runs/{run_id}", f"/devices/{device['id']}/runs"]
    urls += [f"/alerts/{alert_id}/runs", f"/devices/{device['id']}", "/"]
    for url in urls:
        page = app_env.client.get(url)
        assert page.status_code == 200, (url, page.status_code)
        _assert_inert(url, page.text)
    run_page = app_env.client.get(f"/runs/{run_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page and "{{7*7}}&lt;b&gt;dev" in run_page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in app_env.client.get(f"/alerts/{alert_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in app_env.client.get("/silences").text


def test_user_supplied_labels_are_text(app_env: AppEnv) -> None:
    """A browser's User-Agent (the session list) and a passkey's name are the user's own text: shown inert."""
    user_id = app_env.user("ua", "viewer")
    client = TestClient(app_env.app, follow_redirects=False, headers={"User-Agent": PAYLOAD})
    sign_in(client, "ua")
    with app_env.svc.engine.begin() as conn:  # after the sign-in: this session stays a full one
        twofactor.add_passkey(conn, user_id, "cred-ua", b"\x01", 0, PAYLOAD[:64], [])
    for url in ("/account", "/account/passkeys"):
        page = client.get(url)
        assert page.status_code == 200, url
        _assert_inert(url, page.text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in client.get("/account/passkeys").text
