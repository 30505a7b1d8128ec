"""The JSON API on a real app and database: device CRUD, secrets never shown, audit, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from server.config.loader import load_config
from server.config.settings import Settings
from server.store.devices import load_device
from tests import sql
from tests.server.api_helpers import AUTH_KEY, COMMUNITY, PRIV_KEY, SSH_PASSWORD, Api
from tests.server.conftest import AppEnv


def full_device(name: str = "core-sw1") -> dict[str, Any]:
    return {
        "name": name,
        "address": "192.0.2.10",
        "tags": ["core", "site-a"],
        "snmp": {"version": "2c", "community": COMMUNITY},
        "ssh": {"user": "monitor", "password": SSH_PASSWORD, "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"},
    }


def stored_spec(env: AppEnv, device_id: int) -> Any:
    with env.svc.engine.connect() as conn:
        row = load_device(conn, env.svc.box, device_id)
    assert row is not None
    return row.spec


# ---------------------------------------------------------------- devices


def test_create_read_list_update_delete(api: Api) -> None:
    created = api("POST", "/api/v1/devices", json=full_device())
    assert created.status_code == 201, created.text
    device = created.json()
    for key in ("id", "name", "address", "state", "tags", "last_polled", "facts", "interfaces", "resources", "metrics"):
        assert key in device, key
    summary = (device["name"], device["address"], device["state"], device["tags"])
    assert summary == ("core-sw1", "192.0.2.10", "unknown", ["core", "site-a"])
    assert device["spec"]["snmp"]["community_set"] is True
    assert device["spec"]["ssh"]["password_set"] is True and device["spec"]["ssh"]["key_passphrase_set"] is False
    assert device["source"] == "api"

    fetched = api("GET", f"/api/v1/devices/{device['id']}")
    assert fetched.status_code == 200 and fetched.json()["spec"] == device["spec"]
    listed = api("GET", "/api/v1/devices").json()
    assert [d["name"] for d in listed["items"]] == ["core-sw1"] and listed["total"] == 1

    patched = api("PATCH", f"/api/v1/devices/{device['id']}", json={"address": "198.51.100.7", "tags": ["edge"]})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["address"], patched.json()["tags"]) == ("198.51.100.7", ["edge"])

    assert api("DELETE", f"/api/v1/devices/{device['id']}").status_code == 204
    assert api("GET", f"/api/v1/devices/{device['id']}").status_code == 404
    assert api("DELETE", f"/api/v1/devices/{device['id']}").status_code == 404


def test_snmp_v3_keys_are_never_shown(api: Api) -> None:
    body = {
        "name": "r1",
        "address": "192.0.2.1",
        "snmp": {"version": "3", "user": "mon", "auth_protocol": "sha256", "auth_key": AUTH_KEY,
                 "priv_protocol": "aes128", "priv_key": PRIV_KEY},
    }
    created = api("POST", "/api/v1/devices", json=body)
    assert created.status_code == 201
    snmp = created.json()["spec"]["snmp"]
    assert snmp["auth_key_set"] and snmp["priv_key_set"] and not snmp["community_set"]
    assert snmp["user"] == "mon" and snmp["auth_protocol"] == "sha256"
    api("GET", "/api/v1/devices")
    api("GET", f"/api/v1/devices/{created.json()['id']}")
    api("GET", "/api/v1/audit")


def test_patch_keeps_omitted_secrets(api: Api) -> None:
    device_id = api("POST", "/api/v1/devices", json=full_device()).json()["id"]
    assert api("PATCH", f"/api/v1/devices/{device_id}", json={"address": "198.51.100.7"}).status_code == 200
    assert api("PATCH", f"/api/v1/devices/{device_id}", json={"snmp": {"port": 1161}}).status_code == 200
    spec = stored_spec(api.env, device_id)
    assert (spec.snmp.community, spec.snmp.port, spec.ssh.password) == (COMMUNITY, 1161, SSH_PASSWORD)

    new_password = "sshpass-NEW-1234"
    response = api("PATCH", f"/api/v1/devices/{device_id}", json={"ssh": {"password": new_password}})
    assert response.status_code == 200 and new_password not in response.text
    spec = stored_spec(api.env, device_id)
    assert (spec.snmp.community, spec.ssh.password, spec.ssh.user) == (COMMUNITY, new_password, "monitor")


def test_devices_from_the_config_file_are_read_only(tmp_path: Path) -> None:
    config_file = tmp_path / "pocketnoc.yaml"
    config_file.write_text(
        "devices:\n  - name: from-file\n    address: 192.0.2.5\n    snmp: {version: 2c, community: " + COMMUNITY + "}\n"
    )
    from fastapi.testclient import TestClient

    from server.web.app import create_app

    app = create_app(Settings(data_dir=tmp_path / "data"), load_config(config_file), poll=False)
    with TestClient(app) as client:
        env = AppEnv(app, client, app.state.services)
        api = Api(env, env.token("ada", "admin"))
        (device,) = api("GET", "/api/v1/devices").json()["items"]
        assert (device["name"], device["source"]) == ("from-file", "config")
        patched = api("PATCH", f"/api/v1/devices/{device['id']}", json={"address": "192.0.2.6"})
        assert patched.status_code == 409 and "config file" in patched.json()["detail"]
        assert api("DELETE", f"/api/v1/devices/{device['id']}").status_code == 409
        assert api("GET", f"/api/v1/devices/{device['id']}").json()["address"] == "192.0.2.5"
        api.assert_no_secrets()


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x1", "address": "192.0.2.1", "bogus": 1},
        {"name": "x1", "address": "192.0.2.1", "snmp": {"community": "c", "comunity": "typo"}},
        {"name": "x1", "address": "http://192.0.2.1/"},
        {"name": "x1", "address": "192.0.2.1; rm -rf /"},
        {"name": "bad name", "address": "192.0.2.1"},
        {"name": "x1", "address": "192.0.2.1", "interval": 0},
        {"name": "x1", "address": "192.0.2.1", "snmp": {"version": "2c"}},
        {"name": "x1", "address": "192.0.2.1", "snmp": {"version": "3", "user": "u", "auth_protocol": "sha", "auth_key": "Kx7q"}},
        {"address": "192.0.2.1"},
    ],
    ids=["unknown-field", "unknown-snmp-field", "url-address", "shell-address", "bad-name", "interval-0",
         "no-community", "short-v3-key", "no-name"],
)
def test_invalid_devices_are_refused_with_422(api: Api, body: dict[str, Any]) -> None:
    response = api("POST", "/api/v1/devices", json=body)
    assert response.status_code == 422, response.text
    assert isinstance(response.json()["detail"], list) and response.json()["detail"]
    assert "Kx7q" not in response.text, "a refused secret is not echoed back"
    assert api("GET", "/api/v1/devices").json()["total"] == 0


@pytest.mark.parametrize(
    "changes",
    [{"bogus": 1}, {"address": "not an address"}, {"snmp": {"community": None}}, {"interval": 1}, {"name": "bad name"}],
    ids=["unknown-field", "bad-address", "drop-community", "interval", "bad-name"],
)
def test_invalid_patches_are_refused_with_422(api: Api, changes: dict[str, Any]) -> None:
    device_id = api("POST", "/api/v1/devices", json=full_device()).json()["id"]
    response = api("PATCH", f"/api/v1/devices/{device_id}", json=changes)
    assert response.status_code == 422, response.text
    assert stored_spec(api.env, device_id).address == "192.0.2.10"


def test_a_patch_body_must_be_an_object(api: Api) -> None:
    device_id = api("POST", "/api/v1/devices", json=full_device()).json()["id"]
    assert api("PATCH", f"/api/v1/devices/{device_id}", json=["address"]).status_code == 422
    response = api("PATCH", f"/api/v1/devices/{device_id}", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422


def test_duplicate_names_conflict(api: Api) -> None:
    assert api("POST", "/api/v1/devices", json=full_device("a")).status_code == 201
    second = api("POST", "/api/v1/devices", json=full_device("b")).json()["id"]
    response = api("POST", "/api/v1/devices", json=full_device("a"))
    assert response.status_code == 409 and "already exists" in response.json()["detail"]
    assert api("PATCH", f"/api/v1/devices/{second}", json={"name": "a"}).status_code == 409


def test_parents_must_exist_and_never_loop(api: Api) -> None:
    assert api("POST", "/api/v1/devices", json={"name": "c", "address": "192.0.2.1", "parent": "ghost"}).status_code == 409
    root = api("POST", "/api/v1/devices", json={"name": "root", "address": "192.0.2.1"}).json()["id"]
    leaf = api("POST", "/api/v1/devices", json={"name": "leaf", "address": "192.0.2.2", "parent": "root"}).json()
    assert leaf["parent"] == "root"
    assert api("PATCH", f"/api/v1/devices/{root}", json={"parent": "leaf"}).status_code == 409
    assert api("GET", f"/api/v1/devices/{root}").json()["children"] == [{"id": leaf["id"], "name": "leaf"}]


def test_every_change_is_audited(api: Api) -> None:
    device_id = api("POST", "/api/v1/devices", json=full_device()).json()["id"]
    api("PATCH", f"/api/v1/devices/{device_id}", json={"ssh": {"password": "sshpass-Hy72-secret"}, "tags": ["x"]})
    api("DELETE", f"/api/v1/devices/{device_id}")
    entries = api("GET", "/api/v1/audit").json()["items"]
    mine = [(e["action"], e["target"], e["username"]) for e in entries if e["action"].startswith("device.")]
    assert mine == [(f"device.{a}", "core-sw1", "ada") for a in ("delete", "update", "create")]
    update_entry = next(e for e in entries if e["action"] == "device.update")
    assert update_entry["detail"] == {"fields": ["ssh", "tags"]}
    assert all(e["ip"] == "testclient" for e in entries if e["action"].startswith("device."))


def test_audit_pages_with_before(api: Api) -> None:
    for i in range(5):
        api("POST", "/api/v1/devices", json={"name": f"d{i}", "address": "192.0.2.1"})
    first = api("GET", "/api/v1/audit", params={"limit": 3}).json()
    assert len(first["items"]) == 3 and first["next_before"] == first["items"][-1]["id"]
    rest = api("GET", "/api/v1/audit", params={"limit": 3, "before": first["next_before"]}).json()
    assert [e["target"] for e in first["items"] + rest["items"]] == ["d4", "d3", "d2", "d1", "d0"]
    assert rest["next_before"] is None


def test_device_list_filters_sorts_and_pages(api: Api) -> None:
    ids = {}
    for name, tags in (("a-up", ["core"]), ("b-down", ["edge"]), ("c-degraded", ["core", "edge"]), ("d-unknown", [])):
        ids[name] = api("POST", "/api/v1/devices", json={"name": name, "address": "192.0.2.1", "tags": tags}).json()["id"]
    with api.env.svc.engine.begin() as conn:
        for name, state in (("a-up", "up"), ("b-down", "down"), ("c-degraded", "degraded")):
            sql.update(conn, "device_status", "device_id = :d", {"state": state}, d=ids[name])
    listed = api("GET", "/api/v1/devices").json()
    assert [d["name"] for d in listed["items"]] == ["b-down", "c-degraded", "d-unknown", "a-up"]
    assert listed["counts"] == {"down": 1, "degraded": 1, "unknown": 1, "up": 1}
    assert listed["tags"] == ["core", "edge"]
    assert [d["name"] for d in api("GET", "/api/v1/devices", params={"tag": "core"}).json()["items"]] == ["c-degraded", "a-up"]
    assert [d["name"] for d in api("GET", "/api/v1/devices", params={"q": "DOWN"}).json()["items"]] == ["b-down"]
    assert [d["name"] for d in api("GET", "/api/v1/devices", params={"state": "up"}).json()["items"]] == ["a-up"]
    page = api("GET", "/api/v1/devices", params={"limit": 2, "offset": 1}).json()
    assert [d["name"] for d in page["items"]] == ["c-degraded", "d-unknown"] and page["total"] == 4
    assert api("GET", "/api/v1/devices", params={"limit": 0}).status_code == 422
    assert api("GET", "/api/v1/devices", params={"q": "x" * 201}).status_code == 422


def test_unknown_devices_are_404(api: Api) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = api(method, "/api/v1/devices/999999", json={} if method == "PATCH" else None)
        assert response.status_code == 404, method
        assert response.json() == {"detail": "no such device"}
    assert api("GET", "/api/v1/devices/not-a-number").status_code == 422


def test_a_timeout_not_shorter_than_the_interval_is_refused_on_create_and_patch(api: Api) -> None:
    late = {"name": "web1", "address": "192.0.2.8", "checks": [{"type": "tcp", "port": 443, "interval": 5, "timeout": 30}]}
    response = api("POST", "/api/v1/devices", json=late)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "checks", "0", "timeout"]
    assert error["msg"].startswith("timeout 30 s must be shorter than the interval (5 s)")
    fine = {**late, "checks": [{"type": "tcp", "port": 443, "interval": 5, "timeout": 4}]}
    device_id = api("POST", "/api/v1/devices", json=fine).json()["id"]
    assert api("POST", "/api/v1/devices", json={"name": "web2", "address": "192.0.2.9", "checks": [{"type": "ping"}],
                                                "interval": 5}).status_code == 201, "the default 5 s at 5 s is let through"
    patched = api("PATCH", f"/api/v1/devices/{device_id}", json={"snmp": {"community": COMMUNITY, "timeout": 60}})
    assert patched.status_code == 422 and patched.json()["detail"][0]["loc"] == ["snmp", "timeout"]
    slower = api("PATCH", f"/api/v1/devices/{device_id}", json={"interval": 10, "checks": [{"type": "tcp", "port": 443,
                                                                                           "timeout": 12}]})
    assert slower.status_code == 422 and "(10 s)" in slower.text
    assert stored_spec(api.env, device_id).checks[0].timeout == 4


def test_a_bare_device_gets_a_ping_check(api: Api) -> None:
    """As README says: no snmp, ssh or checks means a ping check (the add form defaults to this too)."""
    from server.polling.jobs import jobs_for

    device_id = api("POST", "/api/v1/devices", json={"name": "bare", "address": "192.0.2.7"}).json()["id"]
    with api.env.svc.engine.connect() as conn:
        row = load_device(conn, api.env.svc.box, device_id)
    assert row is not None and row.spec.snmp is None
    assert [(j.check, j.kind) for j in jobs_for(row, api.env.svc.settings)] == [("ping", "ping")]
