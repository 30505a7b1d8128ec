"""Servers over SSH and services over HTTP(S), end to end: host-key enrollment, health, checks, alerts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.auth.passwords import create_user
from server.config.settings import Settings
from server.store import accounts
from server.web.app import create_app
from tests.peers.http_servers import start_http_server, start_https_server
from tests.peers.sshd import SshdPeer, start_sshd


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshdPeer]:
    peer = start_sshd(tmp_path)
    yield peer
    peer.stop()


@pytest.fixture
def app_client(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    app = create_app(Settings(data_dir=tmp_path / "data", down_after_failures=1))
    with TestClient(app) as client:
        with app.state.services.engine.begin() as conn:
            token = accounts.new_token(conn, create_user(conn, "root-admin", "admin", "correct-horse-battery"), "t")
        yield client, {"Authorization": f"Bearer {token}"}


def _poll(client: TestClient, headers: dict[str, str], device_id: int) -> dict[str, Any]:
    r = client.post(f"/api/v1/devices/{device_id}/poll", headers=headers)
    assert r.status_code == 200, r.text
    return dict(client.get(f"/api/v1/devices/{device_id}", headers=headers).json())


def test_ssh_host_key_is_enrolled_by_an_admin_then_health_shows(
    app_client: tuple[TestClient, dict[str, str]], sshd: SshdPeer, tmp_path: Path
) -> None:
    client, headers = app_client
    spec = {
        "name": "web-01",
        "address": "127.0.0.1",
        "interval": 3600,
        "ssh": {
            "port": sshd.port,
            "user": sshd.user,
            "key_file": sshd.key_path,
            "commands": [
                {"name": "echo-ok", "command": "echo ready", "regex": "ready"},
                {"name": "queue", "command": "echo depth=1500", "value_regex": "depth=(\\d+)", "warn": 100, "crit": 1000},
            ],
        },
    }
    created = client.post("/api/v1/devices", json=spec, headers=headers)
    assert created.status_code == 201, created.text
    device_id = created.json()["id"]
    device = _poll(client, headers, device_id)
    assert device["state"] == "down" and "host key not pinned" in device["last_error"]
    assert sshd.count("Accepted") == 0  # never signed in to an unverified host
    keys = client.get(f"/api/v1/devices/{device_id}/host-keys", headers=headers).json()
    offered = keys["offered"]
    assert offered["problem"] == "unknown" and offered["fingerprint"].startswith("SHA256:")
    wrong = client.post(f"/api/v1/devices/{device_id}/host-keys", json={"fingerprint": "SHA256:not-this-one"}, headers=headers)
    assert wrong.status_code == 409
    ok = client.post(f"/api/v1/devices/{device_id}/host-keys", json={"fingerprint": offered["fingerprint"]}, headers=headers)
    assert ok.status_code == 201
    device = _poll(client, headers, device_id)
    assert device["state"] == "up", device["last_error"]
    res = device["resources"]
    assert res["mem_total_bytes"] > 0 and "load1" in res and res["filesystems"]
    assert any(fs["mount"] == "/" for fs in res["filesystems"])
    commands = {c["name"]: c for c in res["commands"]}
    assert commands["echo-ok"]["status"] == "ok" and commands["queue"]["status"] == "critical"
    assert commands["queue"]["value"] == 1500
    page = client.get(f"/devices/{device_id}", headers=headers)
    assert page.status_code == 200 and "Trusted: ssh-ed25519" in page.text
    alerts = client.get("/api/v1/alerts", headers=headers).json()["items"]
    assert any(a["rule"] == "command-check" and a["labels"] == {"check": "queue"} for a in alerts)

    # The same device now answers with another host key: refused before login, and a critical alert.
    (tmp_path / "other").mkdir()
    other = start_sshd(tmp_path / "other")
    try:
        changed = client.patch(f"/api/v1/devices/{device_id}", json={"ssh": {"port": other.port}}, headers=headers)
        assert changed.status_code == 200, changed.text
        device = _poll(client, headers, device_id)
        assert device["state"] == "down" and "mismatch" in device["last_error"]
        assert other.count("Accepted") == 0 and other.count("Failed") == 0
        alerts = client.get("/api/v1/alerts", headers=headers).json()["items"]
        security = [a for a in alerts if a["rule"] == "ssh-host-key-changed"]
        assert len(security) == 1 and security[0]["severity"] == "critical"
        _poll(client, headers, device_id)  # a second failed poll does not make a second alert
        assert (
            len([a for a in client.get("/api/v1/alerts", headers=headers).json()["items"] if a["rule"] == "ssh-host-key-changed"])
            == 1
        )
        audit = client.get("/api/v1/audit", headers=headers).json()["items"]
        assert sum(e["action"] == "security.ssh_host_key_changed" for e in audit) == 1
    finally:
        other.stop()


def test_http_checks_show_history_and_raise_tls_and_failure_alerts(app_client: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = app_client
    https = start_https_server(days_valid=5)
    plain = start_http_server()
    try:
        spec = {
            "name": "shop",
            "address": "127.0.0.1",
            "interval": 3600,
            "checks": [
                {"type": "http", "name": "tls", "url": https.base_url + "/ok", "verify_tls": False, "body_regex": "pocketnoc-ok"},
                {"type": "http", "name": "api", "url": plain.base_url + "/status/500", "expected_status": [200]},
                {"type": "tcp", "port": int(plain.base_url.rsplit(":", 1)[1])},
                {"type": "ping"},
            ],
        }
        device_id = client.post("/api/v1/devices", json=spec, headers=headers).json()["id"]
        device = _poll(client, headers, device_id)
        checks = {c["name"]: c for c in device["checks"]}
        assert checks["tls"]["ok"] and checks["ping"]["ok"] and checks["tcp-" + plain.base_url.rsplit(":", 1)[1]]["ok"]
        assert not checks["api"]["ok"] and "500" in checks["api"]["error"]
        assert device["state"] == "degraded"
        days = [m for m in device["metrics"] if m["metric"] == "tls_cert_days_left"]
        assert days and 4 < days[0]["value"] <= 5 and days[0]["labels"] == {"check": "tls"}
        alerts = {a["rule"]: a for a in client.get("/api/v1/alerts", headers=headers).json()["items"]}
        assert "tls-expiring" in alerts and "(tls) expires in 5 days" in alerts["tls-expiring"]["title"]
        assert alerts["check-failing"]["labels"] == {"check": "api", "kind": "http"}
        history = client.get(
            f"/api/v1/devices/{device_id}/history", params={"metric": "http_latency_ms", "range": "1h"}, headers=headers
        ).json()
        assert {tuple(i["labels"].items()) for i in history["items"]} >= {(("check", "tls"),)}
        page = client.get(f"/devices/{device_id}", headers=headers).text
        assert "HTTP latency (ms) · tls" in page and "<svg" in page
    finally:
        https.stop()
        plain.stop()
