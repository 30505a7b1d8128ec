"""End to end against a real snmpd: config → scheduler → poller → writer → state → API and pages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.auth.passwords import create_user
from server.config.loader import load_config
from server.config.settings import Settings
from server.store import accounts
from server.web.app import create_app
from tests.peers.snmpd import SnmpdPeer, start_snmpd
from tests.server.conftest import PASSWORD, form_csrf, sign_in


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    peer = start_snmpd(tmp_path, sys_name="<b>lab</b>-sw", sys_location="rack <script>alert(1)</script>")
    yield peer
    peer.stop()


def _client(tmp_path: Path, snmpd: SnmpdPeer, extra: str = "") -> tuple[Any, Any]:
    conf = tmp_path / "pocketnoc.yaml"
    conf.write_text(
        f"""
settings:
  down_after_failures: 1
  snmp_timeout: 1.5
  snmp_retries: 1
devices:
  - name: lab-snmpd
    address: 127.0.0.1
    interval: 300
    tags: [lab]
    snmp: {{version: 2c, port: {snmpd.port}, community: {snmpd.community}}}
  - name: lab-v3
    address: 127.0.0.1
    interval: 300
    parent: lab-snmpd
    snmp: {{version: 3, port: {snmpd.port}, user: mon, auth_protocol: sha, auth_key: authpass123,
           priv_protocol: aes128, priv_key: privpass123}}
{extra}
"""
    )
    config = load_config(conf)
    settings = Settings(data_dir=tmp_path / "data", **config.settings)
    return create_app(settings, config), config


def _token(app: Any, role: str = "operator") -> dict[str, str]:
    with app.state.services.engine.begin() as conn:
        user_id = create_user(conn, f"u-{role}", role, "correct-horse-battery")
        token = accounts.new_token(conn, user_id, "test")
    return {"Authorization": f"Bearer {token}"}


def _device(client: TestClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    items = client.get("/api/v1/devices", headers=headers).json()["items"]
    device_id = next(d["id"] for d in items if d["name"] == name)
    return dict(client.get(f"/api/v1/devices/{device_id}", headers=headers).json())


def test_poll_store_and_show(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    app, _ = _client(tmp_path, snmpd)
    with TestClient(app) as client:
        headers = _token(app)
        for name in ("lab-snmpd", "lab-v3"):
            device = _device(client, headers, name)
            # Unknown until its first poll (the scheduler's own turn may come first: then it was polled).
            assert device["state"] == "unknown" or device["last_polled"] is not None, device
            r = client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers)
            assert r.status_code == 200, r.text
            device = _device(client, headers, name)
            assert device["state"] == "up", device["last_error"]
            assert device["facts"]["sys_name"] == "<b>lab</b>-sw"
            assert device["facts"]["sys_location"] == "rack <script>alert(1)</script>"
            assert device["last_polled"] and device["interfaces"]
            assert any(i["name"] == "lo" for i in device["interfaces"])
            assert device["resources"].get("mem_total_bytes", 0) > 0
        # A second poll a moment later turns counters into rates: in a later second (samples are kept per second).
        device = _device(client, headers, "lab-snmpd")
        time.sleep(1 - time.time() % 1)
        client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers)
        device = _device(client, headers, "lab-snmpd")
        lo = next(i for i in device["interfaces"] if i["name"] == "lo")
        assert lo["in_bps"] is not None and lo["in_bps"] >= 0
        history = client.get(
            f"/api/v1/devices/{device['id']}/history", params={"metric": "if_in_bps", "range": "1h"}, headers=headers
        ).json()
        assert history["items"] and history["items"][0]["points"]
        # The page shows device text escaped.
        page = client.get(f"/devices/{device['id']}", headers=headers)
        assert page.status_code == 200
        assert "<script>alert(1)</script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        metrics = client.get("/metrics", headers=headers).text
        assert 'pocketnoc_device_state{device="lab-snmpd",state="up"} 1' in metrics
        assert "pocketnoc_if_in_bps{" in metrics


def test_outage_and_recovery(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    app, _ = _client(tmp_path, snmpd)
    with TestClient(app) as client:
        headers = _token(app)
        device = _device(client, headers, "lab-snmpd")
        client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers)
        assert _device(client, headers, "lab-snmpd")["state"] == "up"
        snmpd.stop()
        started = time.monotonic()
        client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers)
        assert time.monotonic() - started < 10
        down = _device(client, headers, "lab-snmpd")
        assert down["state"] == "unreachable"
        assert down["last_error"]
        snmpd.start()
        client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers)
        up = _device(client, headers, "lab-snmpd")
        assert up["state"] == "up"
        assert [e["new"] for e in up["events"]][:3] == ["up", "unreachable", "up"]


def test_wrong_v3_key_is_down_not_unreachable(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    extra = f"""  - name: lab-badkey
    address: 127.0.0.1
    interval: 300
    snmp: {{version: 3, port: {snmpd.port}, user: mon, auth_protocol: sha, auth_key: wrongpass123,
           priv_protocol: aes128, priv_key: privpass123}}
"""
    app, _ = _client(tmp_path, snmpd, extra)
    with TestClient(app) as client:
        headers = _token(app)
        device = _device(client, headers, "lab-badkey")
        client.post(f"/api/v1/devices/{device['id']}/poll", headers=headers)
        device = _device(client, headers, "lab-badkey")
        assert device["state"] in ("down", "unreachable")
        assert device["last_error"]


def test_poll_now_on_the_device_page_says_whether_it_polled(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    spare = "  - name: lab-spare\n    address: 127.0.0.1\n    interval: 300\n    enabled: false\n"
    app, _ = _client(tmp_path, snmpd, extra=spare)
    with TestClient(app) as client:
        headers = _token(app)
        with app.state.services.engine.begin() as conn:
            create_user(conn, "oncall", "operator", PASSWORD)
        client.follow_redirects = False
        sign_in(client, "oncall")
        for name, word, said in (("lab-snmpd", "polled", "Polled just now"),
                                 ("lab-spare", "none", "Not polled: polling is off for this device")):  # fmt: skip
            device = _device(client, headers, name)
            page = client.get(f"/devices/{device['id']}")
            assert ("Poll now" in page.text) is (name == "lab-snmpd")  # not offered where polling is off
            done = client.post(f"/devices/{device['id']}/poll", data={"csrf_token": form_csrf(page.text)})
            assert done.status_code == 303 and done.headers["location"] == f"/devices/{device['id']}?done={word}"
            assert said in client.get(done.headers["location"]).text, name
        spare = _device(client, headers, "lab-spare")["id"]
        refused = client.post(f"/api/v1/devices/{spare}/poll", headers=headers)
        assert refused.status_code == 404 and "polling is off" in refused.json()["detail"]
        assert _device(client, headers, "lab-snmpd")["state"] == "up"
        # The word comes from a fixed list: anything else in ?done= says nothing.
        page = client.get(f"/devices/{device['id']}", params={"done": "<script>"})
        assert page.status_code == 200 and "Polled" not in page.text and "<script>" not in page.text.split("<main")[1]


def test_scheduler_polls_on_its_own(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(
        f"devices:\n  - name: quick\n    address: 127.0.0.1\n    interval: 5\n"
        f"    snmp: {{version: 2c, port: {snmpd.port}, community: public}}\n"
    )
    config = load_config(conf)
    app = create_app(Settings(data_dir=tmp_path / "d"), config)
    with TestClient(app) as client:
        headers = _token(app, "viewer")
        deadline = time.monotonic() + 30
        state = "unknown"
        while time.monotonic() < deadline and state != "up":
            time.sleep(0.5)
            state = client.get("/api/v1/devices", headers=headers).json()["items"][0]["state"]
        assert state == "up"
