"""Every page with everything configured: built-in rules (plus an API rule), every channel kind, every action kind.

No page may leak Python internals into its HTML: a bound method (`<built-in method ...>`), a raw dict (`{'`),
a `None` or a traceback.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.alerts.rules import DEFAULT_RULES
from server.auth import passwords
from server.config.settings import Settings
from server.notify.channels import REGISTRY, load_builtins
from server.notify.runtime import runtime
from server.store import accounts
from server.store import alerts as alerts_store
from server.store import notify_targets as store_targets
from server.store import runs as actions_store
from server.store.metrics import labels_key
from server.web.app import create_app
from tests import sql
from tests.server.app_fleet import add_history
from tests.server.conftest import bearer, make_app_env, sign_in

ROOT = Path(__file__).resolve().parents[2]
# Checked raw and as Jinja escapes them (`<` -> `&lt;`, `'` -> `&#39;`).
LEAKS = re.compile(r"(<|&lt;)(built-in|bound method|function )|\{('|&#39;|&#x27;)|\bNone\b|Traceback|object at 0x")
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

CHANNELS = """
channels:
  - {name: hook, url: "https://hooks.example.net/pocketnoc/T0KEN"}
  - {name: mail, url: "smtp://alerts%40example.net:pw@mail.example.net:587/?from=alerts@example.net&to=oncall@example.net"}
  - {name: ntfy, url: "ntfy://ntfy.example.net/ops"}
  - {name: personal, url: "json://hooks.example.net/alice", user: admin, enabled: false}
routes:
  - {name: all, match: {}, users: ["*"], channels: [hook, mail, ntfy], quiet_hours: {start: "22:00", end: "07:00"}}
escalations:
  - name: core
    steps: [{after_minutes: 10, users: [admin]}]
deadman: {url: null}
"""


@pytest.fixture
def everything(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, int], str]]:
    """An app with the example action catalog (SSH and SNMP actions), every channel kind, and devices of each kind."""
    shutil.copy(ROOT / "config" / "actions.example.yaml", tmp_path / "actions.yaml")
    (tmp_path / "channels.yaml").write_text(CHANNELS)
    settings = Settings(
        data_dir=tmp_path / "data", writer_batch_seconds=0.05,
        actions_file=tmp_path / "actions.yaml", channels_file=tmp_path / "channels.yaml",
    )  # fmt: skip
    app = create_app(settings, poll=False)
    with TestClient(app, follow_redirects=False) as client:
        env_svc = app.state.services
        with env_svc.engine.begin() as conn:
            passwords.create_user(conn, "admin", "admin", "correct horse battery")
        runtime(env_svc).sync_channels()  # what the notify worker does at start (polling is off here)
        with env_svc.engine.begin() as conn:
            found = accounts.get_user_by_name(conn, "admin")
            assert found is not None
            token = accounts.new_token(conn, found[0].id, "test")
        ids: dict[str, int] = {}
        specs = {
            "switch": {"name": "access-sw2", "address": "192.0.2.2", "kind": "switch", "tags": ["core"],
                       "snmp": {"version": "2c", "community": "public", "write": {"community": "private"}}},
            "linux": {"name": "web-01", "address": "192.0.2.3", "kind": "linux", "tags": ["nginx", "web", "print-server"],
                      "ssh": {"user": "monitor", "key_file": "/nonexistent/id_ed25519", "host_key": HOST_KEY}},
            "printer": {"name": "printer-1", "address": "192.0.2.4", "kind": "printer",
                        "snmp": {"version": "2c", "community": "public", "write": {"community": "private"}}},
        }  # fmt: skip
        for kind, spec in specs.items():
            r = client.post("/api/v1/devices", json={**spec, "interval": 3600}, headers=bearer(token))
            assert r.status_code == 201, r.text
            ids[kind] = int(r.json()["id"])
        r = client.post(
            "/api/v1/rules", headers=bearer(token),
            json={"name": "http-slow", "expr": "http_ms > 500", "severity": "info", "match": {"labels": {"kind": "http"}},
                  "labels": {"team": "web"}},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        now = time.time()
        add_history(env_svc.engine, ids["switch"], now)
        add_history(env_svc.engine, ids["linux"], now)
        with env_svc.engine.begin() as conn:
            key = labels_key({"ifIndex": "2", "ifName": "Gi1/0/2"})
            alerts_store.fire_event_alert(conn, "interface-down", ids["switch"], key, "warning",
                                          "access-sw2: interface Gi1/0/2 is down", now - 60, "fixture")  # fmt: skip
            alerts_store.fire_event_alert(conn, "device-down", ids["printer"], "", "critical", "printer-1 is down",
                                          now - 30, "fixture")  # fmt: skip
            ids["alert"] = int(sql.scalar(conn, "SELECT id FROM alerts ORDER BY id") or 0)
            # One finished run of each action kind (SSH and SNMP), in each ending: the run pages render them all.
            runs = (("restart-service", "ssh", "web-01", "linux", "succeeded", "fixed", {"unit": "nginx"}),
                    ("port-bounce", "snmp", "access-sw2", "switch", "failed", "failing", {"port": 2}),
                    ("show-top", "ssh", "web-01", "linux", "timed_out", None, {}))  # fmt: skip
            for action_id, kind, device_name, device_kind, status, verdict, params in runs:
                run_id = actions_store.create_run(conn, {
                    "action_id": action_id, "title": action_id, "kind": kind, "danger": "medium",
                    "device_id": ids[device_kind], "device_name": device_name, "alert_id": ids["alert"],
                    "user_id": None, "username": "admin", "reason": "", "params": params, "command": f"run {action_id}",
                })  # fmt: skip
                actions_store.finish_run(conn, run_id, {"status": status, "exit_code": 0 if status == "succeeded" else 1,
                                                        "output": [["stdout", "ok\n"], ["stderr", "warn\n"]],
                                                        "finished_at": now, "duration": 1.5})  # fmt: skip
                if verdict:
                    actions_store.set_verification(conn, run_id, verdict, "re-polled")
                ids[f"run-{action_id}"] = run_id
            assert sql.rows(conn, "SELECT device_id FROM device_status")
        with env_svc.engine.begin() as conn:  # a phone subscribed to Web Push: the push "channel" of every user
            admin_id = accounts.get_user_by_name(conn, "admin")
            assert admin_id is not None
            sub = {"endpoint": "https://push.example.net/send/abc", "p256dh": "BPk", "auth": "au"}
            store_targets.add_subscription(conn, env_svc.box, admin_id[0].id, sub, "push.example.net", "pixel 7", now)
        sign_in(client, "admin")
        yield client, ids, token


def _leaks(html: str) -> list[str]:
    return [html[max(0, m.start() - 60) : m.end() + 60] for m in LEAKS.finditer(html)]


def test_every_channel_kind_and_action_kind_is_configured(everything: tuple[TestClient, dict[str, int], str]) -> None:
    """The fixture really covers every registered channel kind and both action transports."""
    client, _ids, token = everything
    load_builtins()
    kinds = {c["kind"] for c in client.get("/api/v1/channels", headers=bearer(token)).json()["items"]}
    assert kinds >= set(REGISTRY), (kinds, set(REGISTRY))
    actions = client.get("/api/v1/actions", headers=bearer(token)).json()["items"]
    assert {"ssh", "snmp"} <= {a["kind"] for a in actions}, actions


def test_every_page_renders_without_python_internals(everything: tuple[TestClient, dict[str, int], str]) -> None:
    client, ids, token = everything
    assert {r.name for r in DEFAULT_RULES}, "built-in rules are in force (no rules_file)"
    pages = [
        "/", "/?q=web", "/alerts", "/alerts?state=all", f"/alerts/{ids['alert']}", f"/alerts/{ids['alert']}/runs",
        "/silences", "/settings", "/workers", "/notify", "/notify/channels", "/admin/devices", "/admin/rules", "/admin/import",
        "/admin/users", "/admin/audit", "/account", "/account/password", "/account/totp", "/account/recovery",
        "/account/passkeys", "/account/verify", "/account/enrol", "/offline", "/login/2fa",
    ]  # fmt: skip
    for kind in ("switch", "linux", "printer"):
        device = ids[kind]
        pages += [f"/devices/{device}", f"/devices/{device}/metrics", f"/devices/{device}/graph?metric=cpu_load_pct",
                  f"/devices/{device}/graph?metric=if_in_bps&range=7d", f"/devices/{device}/runs",
                  f"/admin/devices/{device}"]  # fmt: skip
    pages.append(f"/devices/{ids['switch']}/interfaces/2")
    pages += [f"/runs/{run_id}" for key, run_id in ids.items() if key.startswith("run-")]
    users = client.get("/api/v1/users", headers=bearer(token)).json()["items"]
    pages += [f"/admin/users/{u['id']}" for u in users]
    for action in client.get("/api/v1/actions", headers=bearer(token)).json()["items"]:
        for kind in ("switch", "linux", "printer"):
            pages.append(f"/devices/{ids[kind]}/actions/{action['id']}")
    problems: dict[str, list[str]] = {}
    for url in pages:
        page = client.get(url)
        assert page.status_code in (200, 303, 404, 409, 422), (url, page.status_code)
        if page.status_code == 200:
            assert "text/html" in page.headers["content-type"], url
        found = _leaks(page.text)
        if found:
            problems[url] = found
    assert not problems, problems


def test_the_rules_page_shows_clear_expressions_and_label_scopes(everything: tuple[TestClient, dict[str, int], str]) -> None:
    client, _ids, _token = everything
    html = client.get("/admin/rules").text
    assert not _leaks(html)
    assert "Clears" in html  # the built-in rules with a clear expression show it as text
    assert "labels: kind=http" in html and "team=web" in html


def test_the_workers_page_shows_the_embedded_poller(settings: Settings) -> None:
    """In the default in-process mode the Workers page lists this server as one worker (it has no shard: no shard
    line), page and API alike. (No devices: nothing is polled.)"""
    for env in make_app_env(settings, poll=True):
        assert env.svc.poller is not None
        token = env.token("admin", "admin")
        sign_in(env.client, "admin")
        page = env.client.get("/workers")
        assert page.status_code == 200, page.text[-500:]
        assert "this server" in page.text and "shard:" not in page.text and not _leaks(page.text)
        api = env.client.get("/api/v1/workers", headers=bearer(token)).json()
        assert [item["name"] for item in api["items"]] == ["this server"]
