"""Alerts against a real snmpd that goes away and comes back: dependencies, ack, snooze, silences, rules."""

from __future__ import annotations

import asyncio
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

CHILDREN = 30


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    peer = start_snmpd(tmp_path)
    yield peer
    peer.stop()


def _app(tmp_path: Path, snmpd: SnmpdPeer, rules: str | None = None) -> Any:
    snmp = f"{{version: 2c, port: {snmpd.port}, community: {snmpd.community}}}"
    lines = ["settings:", "  down_after_failures: 1", "  snmp_timeout: 1.5", "  snmp_retries: 1"]
    lines.append("  flap_settle_seconds: 0")  # outages here last seconds: resolve at once, not after a flapping wait
    if rules is not None:
        (tmp_path / "rules.yaml").write_text(rules)
        lines.append("  rules_file: rules.yaml")
    lines += [
        "devices:",
        "  - name: core-sw",
        "    address: 127.0.0.1",
        "    interval: 3600",
        "    tags: [core, site-a]",
        f"    snmp: {snmp}",
    ]
    for i in range(CHILDREN):
        lines += [
            f"  - name: access-{i}",
            "    address: 127.0.0.1",
            "    interval: 3600",
            "    parent: core-sw",
            "    tags: [site-a]",
            f"    snmp: {snmp}",
        ]
    conf = tmp_path / "pocketnoc.yaml"
    conf.write_text("\n".join(lines) + "\n")
    config = load_config(conf)
    return create_app(Settings(data_dir=tmp_path / "data", **config.settings), config)


def _headers(app: Any, role: str) -> dict[str, str]:
    with app.state.services.engine.begin() as conn:
        user_id = create_user(conn, f"{role}-user", role, "correct-horse-battery")
        return {"Authorization": f"Bearer {accounts.new_token(conn, user_id, 't')}"}


def _poll_all(client: TestClient, app: Any) -> None:
    svc = app.state.services

    async def run() -> None:
        ids = sorted({job.device_id for job in svc.dispatcher.jobs.values()})
        await asyncio.gather(*(svc.dispatcher.run_now(i) for i in ids))

    assert client.portal is not None
    client.portal.call(run)
    assert svc.writer.flush(30)


def _alerts(client: TestClient, headers: dict[str, str], state: str = "open") -> list[dict[str, Any]]:
    r = client.get("/api/v1/alerts", params={"state": state}, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_core_outage_with_30_dependents_is_one_firing_alert(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    app = _app(tmp_path, snmpd)
    with TestClient(app) as client:
        ops = _headers(app, "operator")
        _poll_all(client, app)
        assert _alerts(client, ops) == []
        snmpd.stop()
        _poll_all(client, app)
        open_alerts = _alerts(client, ops)
        firing = [a for a in open_alerts if a["state"] == "firing"]
        assert len(firing) == 1, [a["title"] for a in firing]
        assert firing[0]["device"]["name"] == "core-sw" and firing[0]["severity"] == "critical"
        assert f"hiding {CHILDREN} dependent alerts" in firing[0]["title"]
        hidden = [a for a in open_alerts if a["state"] == "suppressed"]
        assert len(hidden) == CHILDREN and all(a["suppressed_by"]["name"] == "core-sw" for a in hidden)
        # The outage is over: everything resolves by itself.
        snmpd.start()
        _poll_all(client, app)
        assert _alerts(client, ops) == []
        resolved = _alerts(client, ops, "resolved")
        assert len(resolved) == CHILDREN + 1 and all(a["resolved_at"] for a in resolved)
        # A new failure after the resolve is a new episode.
        snmpd.stop()
        _poll_all(client, app)
        again = [a for a in _alerts(client, ops) if a["state"] == "firing"]
        assert len(again) == 1 and again[0]["episode"] == 2 and again[0]["id"] != firing[0]["id"]


def test_ack_snooze_note_and_roles(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    app = _app(tmp_path, snmpd)
    with TestClient(app) as client:
        ops, viewer = _headers(app, "operator"), _headers(app, "viewer")
        snmpd.stop()
        _poll_all(client, app)
        alert = next(a for a in _alerts(client, ops) if a["state"] == "firing")
        url = f"/api/v1/alerts/{alert['id']}"
        assert client.post(url + "/ack", json={"note": "on it"}, headers=viewer).status_code == 403
        r = client.post(url + "/ack", json={"note": "on it <script>"}, headers=ops)
        assert r.status_code == 200 and r.json()["state"] == "acknowledged" and r.json()["acked_by"] == "operator-user"
        assert client.post(url + "/ack", json={}, headers=ops).status_code == 409
        assert client.post(url + "/ack", json={"note": "x", "command": "id"}, headers=ops).status_code == 422
        assert client.post(url + "/unack", headers=ops).json()["state"] == "firing"
        r = client.post(url + "/snooze", json={"minutes": 60}, headers=ops)
        assert r.json()["state"] == "snoozed" and r.json()["snoozed_until"]
        assert client.post(url + "/notes", json={"note": "called the ISP"}, headers=ops).status_code == 200
        detail = client.get(url, headers=viewer).json()
        kinds = [e["kind"] for e in detail["events"]]
        assert kinds[:1] == ["fired"] and {"acknowledged", "unacknowledged", "snoozed", "note"} <= set(kinds)
        page = client.get(f"/alerts/{alert['id']}", headers=viewer)
        assert page.status_code == 200 and "on it &lt;script&gt;" in page.text
        audit = client.get("/api/v1/audit", headers=_headers(app, "admin")).json()["items"]
        assert {"alert.ack", "alert.unack", "alert.snooze", "alert.note"} <= {e["action"] for e in audit}
        snmpd.start()
        _poll_all(client, app)
        assert client.post(url + "/ack", json={}, headers=ops).status_code == 409  # resolved now


def test_silence_by_tag_keeps_polling(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    app = _app(tmp_path, snmpd)
    with TestClient(app) as client:
        ops = _headers(app, "operator")
        r = client.post("/api/v1/silences", json={"tag": "core", "duration_minutes": 60, "comment": "upgrade"}, headers=ops)
        assert r.status_code == 201, r.text
        bad = client.post("/api/v1/silences", json={"tag": "core", "device": "core-sw", "duration_minutes": 5}, headers=ops)
        assert bad.status_code == 422
        snmpd.stop()
        _poll_all(client, app)
        core = next(a for a in _alerts(client, ops) if a["device"]["name"] == "core-sw")
        assert core["state"] == "silenced" and core["silenced"]
        devices = client.get("/api/v1/devices", params={"q": "core-sw"}, headers=ops).json()["items"]
        assert devices[0]["state"] == "unreachable"  # polling went on
        silence_id = client.get("/api/v1/silences", headers=ops).json()["items"][0]["id"]
        assert client.delete(f"/api/v1/silences/{silence_id}", headers=ops).status_code == 204
        core = next(a for a in _alerts(client, ops) if a["device"]["name"] == "core-sw")
        assert core["state"] == "firing"


def test_rules_file_errors_keep_the_last_good_rules(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    app = _app(tmp_path, snmpd, rules="defaults: false\nrules:\n  - name: only-down\n    expr: state == unreachable\n")
    with TestClient(app) as client:
        admin = _headers(app, "admin")
        names = [r["name"] for r in client.get("/api/v1/rules", headers=admin).json()["items"]]
        assert names == ["only-down"]
        (tmp_path / "rules.yaml").write_text("rules:\n  - name: broken\n    expr: mem >> 3\n    bogus: 1\n")
        r = client.post("/api/v1/rules/reload", headers=admin)
        assert r.status_code == 422
        errors = r.json()["detail"]["errors"]
        assert any("rules.yaml:3" in e for e in errors) and any("rules.yaml:4" in e and "unknown key" in e for e in errors)
        assert [r["name"] for r in client.get("/api/v1/rules", headers=admin).json()["items"]] == ["only-down"]
        r = client.post("/api/v1/rules", json={"name": "api-rule", "expr": "cpu_load_pct > 99", "for": 60}, headers=admin)
        assert r.status_code == 201, r.text
        assert client.post("/api/v1/rules", json={"name": "x", "expr": "__import__('os')"}, headers=admin).status_code == 422
        names = [r["name"] for r in client.get("/api/v1/rules", headers=admin).json()["items"]]
        assert names == ["only-down", "api-rule"]
