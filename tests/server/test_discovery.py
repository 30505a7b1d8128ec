"""Discovery end to end against the lab network (snmpsim devices with LLDP/CDP, a real snmpd answering v3 only):
a run proposes, nothing is added until an admin approves, parents come from the neighbour tables, re-runs diff,
credentials never show, and bad input is a clear error."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.cli.discovery import cmd_discover
from server.cli.main import build_parser
from server.config.settings import Settings
from server.services import discovery
from server.store import devices
from tests.peers.lab_network import DB_HOST, OUTSIDE, LabNetwork, lab_network
from tests.server.conftest import AppEnv, assert_clean_error, bearer, form_csrf, run_cli, sign_in

AUTH_KEY, PRIV_KEY, COMMUNITY = "authpass123", "privpass123", "public"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    with lab_network(tmp_path_factory.mktemp("lab")) as net:
        yield net


def run_body(lab: LabNetwork, **extra: Any) -> dict[str, Any]:
    """A run over the lab range trying v2c `public` and the v3 user (given second: v3 is tried first anyway)."""
    return {
        "ranges": list(lab.ranges),
        "seed": "127.0.77.1",
        "snmp": [
            {"version": "2c", "community": COMMUNITY, "port": lab.port},
            {"version": "3", "user": "mon", "auth_protocol": "sha", "auth_key": AUTH_KEY, "priv_protocol": "aes128",
             "priv_key": PRIV_KEY, "port": lab.port},
        ],
        "ports": [lab.port],
        "timeout": 0.5,
        **extra,
    }


def wait_done(client: TestClient, headers: dict[str, str], run_id: int, seconds: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        view = client.get(f"/api/v1/discovery/runs/{run_id}", headers=headers).json()
        if view["status"] != "running":
            return dict(view)
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still running after {seconds}s")


def by_address(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["address"]: f for f in view["items"]}


def test_a_run_proposes_then_an_admin_approves(app_env: AppEnv, lab: LabNetwork, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    admin = bearer(app_env.token("ada", "admin"))
    started = app_env.client.post("/api/v1/discovery/runs", headers=admin, json=run_body(lab))
    assert started.status_code == 202, started.text
    view = wait_done(app_env.client, admin, started.json()["id"])
    assert view["status"] == "done", view
    found = by_address(view)
    snmp = {a: f for a, f in found.items() if f["facts"]["credential"] is not None}
    assert set(snmp) == {"127.0.77.1", "127.0.77.2", "127.0.77.3", DB_HOST}
    core, dist, ap, db = (snmp[a] for a in ("127.0.77.1", "127.0.77.2", "127.0.77.3", DB_HOST))
    assert (core["name"], core["facts"]["model"], core["facts"]["serial"], core["facts"]["family"]) == (
        "core-sw1", "C9300-24T", "FOC1234X0AB", "cisco-ios")
    assert dist["facts"]["kind"] == "switch" and dist["facts"]["family"] == "juniper-junos" and dist["facts"]["if_count"] == 48
    assert db["name"] == "db1" and db["facts"]["kind"] == "linux" and db["facts"]["credential"] == 0  # v3, tried first
    assert core["facts"]["credential"] == 1  # the v2c community, second in the order tried
    # Parents: the uplink neighbour towards the seed, from LLDP (dist-sw1, db1) and CDP (ap1).
    assert (core["parent"], dist["parent"], ap["parent"], db["parent"]) == (None, "core-sw1", "core-sw1", "core-sw1")
    assert all(f["status"] == "proposed" and f["change"] == "new" for f in snmp.values())
    assert OUTSIDE not in found  # the printer's address is a neighbour outside the range: never probed
    with app_env.svc.reader.connect() as conn:
        assert devices.count_devices(conn) == 0  # nothing added before approval

    approved = app_env.client.post(f"/api/v1/discovery/runs/{view['id']}/approve", headers=admin, json={"all": True})
    assert approved.status_code == 200, approved.text
    added = {a["name"]: a for a in approved.json()["items"]}
    assert set(added) == {"core-sw1", "dist-sw1.lab.test", "ap1.lab.test", "db1"}
    with app_env.svc.reader.connect() as conn:
        rows = {d.name: d for d in devices.load_devices(conn, app_env.svc.box)}
    assert rows["db1"].spec.snmp is not None and rows["db1"].spec.snmp.version == "3" and rows["db1"].spec.snmp.user == "mon"
    assert rows["core-sw1"].spec.snmp is not None and rows["core-sw1"].spec.snmp.community == COMMUNITY
    assert rows["dist-sw1.lab.test"].parent_id == rows["core-sw1"].id
    audit = app_env.client.get("/api/v1/audit", headers=admin).json()["items"]
    assert {"discovery.start", "discovery.approve"} <= {e["action"] for e in audit}
    runs = app_env.client.get("/api/v1/discovery/runs", headers=admin).json()
    shown = json.dumps(view) + json.dumps(audit) + caplog.text + json.dumps(runs)
    for secret in (AUTH_KEY, PRIV_KEY, f'"{COMMUNITY}"'):
        assert secret not in shown  # credentials tried are never shown, audited or logged

    # Neighbours per port, stored at approval; the hostile name is stored clean and shown escaped.
    nb = app_env.client.get(f"/api/v1/devices/{added['dist-sw1.lab.test']['id']}/neighbours", headers=admin).json()["items"]
    ports = {n["local_port"]: n for n in nb}
    assert ports["ge-0/0/47"]["remote_name"] == "core-sw1" and ports["ge-0/0/47"]["remote_device_id"] == added["core-sw1"]["id"]
    assert "\x1b" not in ports["ge-0/0/0"]["remote_name"] and len(ports["ge-0/0/0"]["remote_name"]) == 128

    # A re-run reports the same devices as unchanged and known.
    again = app_env.client.post(f"/api/v1/discovery/runs/{view['id']}/rerun", headers=admin)
    assert again.status_code == 202
    second = wait_done(app_env.client, admin, again.json()["id"])
    same = by_address(second)
    assert second["previous_id"] == view["id"] and second["counts"]["new"] == 0 and second["counts"]["gone"] == 0
    assert same["127.0.77.1"]["change"] == "same" and same["127.0.77.1"]["status"] == "known"


def test_the_pages_start_a_run_and_show_neighbours_and_the_map(app_env: AppEnv, lab: LabNetwork) -> None:
    app_env.user("ada", "admin")
    sign_in(app_env.client, "ada")
    page = app_env.client.get("/discovery")
    assert page.status_code == 200 and "Find devices" in page.text
    form = {"csrf_token": form_csrf(page.text), "ranges": "127.0.77.0/29", "seed": "127.0.77.1", "communities": COMMUNITY,
            "port": str(lab.port)}
    assert app_env.client.post("/discovery", data={**form, "csrf_token": "wrong"}).status_code == 403
    bad = app_env.client.post("/discovery", data={**form, "ranges": "0.0.0.0/0"})
    assert bad.status_code == 422 and "/0 range is the whole Internet" in bad.text
    assert 'name="communities" type="password" autocomplete="off" maxlength="2000">' in bad.text  # the secret is not echoed
    started = app_env.client.post("/discovery", data=form)
    assert started.status_code == 303
    run_url = started.headers["location"]
    run_id = int(run_url.rsplit("/", 1)[1])
    wait_done(app_env.client, {}, run_id)
    html = app_env.client.get(run_url).text
    assert "core-sw1" in html and "C9300-24T" in html and "behind core-sw1" in html
    ids = [f["id"] for f in app_env.client.get(f"/api/v1/discovery/runs/{run_id}").json()["items"]
           if f["name"] in ("core-sw1", "dist-sw1.lab.test")]
    done = app_env.client.post(f"/discovery/runs/{run_id}/approve", data={"csrf_token": form_csrf(html), "id": ids})
    assert done.status_code == 303 and done.headers["location"].endswith("approved=2")
    with app_env.svc.reader.connect() as conn:
        names = {d.name: d.id for d in devices.load_devices(conn, app_env.svc.box)}
    assert set(names) == {"core-sw1", "dist-sw1.lab.test"}
    device = app_env.client.get(f"/devices/{names['dist-sw1.lab.test']}").text
    assert "Neighbours" in device and "ge-0/0/47" in device and f'href="/devices/{names["core-sw1"]}"' in device
    assert "\x1b" not in device and "[31mEVIL" in device
    topo = app_env.client.get("/map")
    assert topo.status_code == 200 and "<svg" in topo.text and 'viewBox="0 0 360' in topo.text
    assert f'href="/devices/{names["core-sw1"]}"' in topo.text and "topo-link" in topo.text
    data = app_env.client.get("/api/v1/topology").json()
    assert {n["name"] for n in data["nodes"]} == set(names) and len(data["lines"]) == 1


BAD_RUNS = [
    ({"ranges": ["0.0.0.0/0"]}, "/0 range"),
    ({"ranges": ["10.0.0.0/12"]}, "confirm"),
    ({"ranges": ["127.0.77.0/28 oops"]}, "not a CIDR range"),
    ({"ranges": [], "seed": "no-such-device"}, "neither an address nor a device"),
    ({"snmp": []}, "at least 1"),
    ({"rate": 1e9}, "less than or equal"),
    ({"snmp": [{"version": "3", "user": "mon", "auth_protocol": "sha", "auth_key": "short"}]}, "at least 8 characters"),
]


def test_bad_runs_are_clear_errors(app_env: AppEnv, lab: LabNetwork) -> None:
    admin = bearer(app_env.token("ada", "admin"))
    for change, fragment in BAD_RUNS:
        answer = app_env.client.post("/api/v1/discovery/runs", headers=admin, json={**run_body(lab), **change})
        assert answer.status_code == 422 and fragment in answer.text, answer.text
        assert AUTH_KEY not in answer.text and PRIV_KEY not in answer.text and "\"short\"" not in answer.text
    assert app_env.client.get("/api/v1/discovery/runs", headers=admin).json()["items"] == []


def test_only_admins_discover_and_viewers_see_the_map(app_env: AppEnv, lab: LabNetwork) -> None:
    viewer = bearer(app_env.token("val", "viewer"))
    operator = bearer(app_env.token("otto", "operator"))
    for who in (viewer, operator):
        assert app_env.client.post("/api/v1/discovery/runs", headers=who, json=run_body(lab)).status_code == 403
        assert app_env.client.get("/api/v1/discovery/runs", headers=who).status_code == 403
    assert app_env.client.get("/api/v1/topology", headers=viewer).status_code == 200


def test_a_run_never_sends_anything_outside_its_ranges(app_env: AppEnv, lab: LabNetwork, tmp_path: Path) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    udp.bind((OUTSIDE, lab.port))
    tcp.bind((OUTSIDE, lab.port))
    tcp.listen()
    udp.setblocking(False)
    tcp.setblocking(False)
    try:
        admin = bearer(app_env.token("ada", "admin"))
        started = app_env.client.post("/api/v1/discovery/runs", headers=admin, json=run_body(lab, ranges=["127.0.77.0/30"]))
        view = wait_done(app_env.client, admin, started.json()["id"])
        assert view["status"] == "done" and view["probes"] > 0
        with pytest.raises(BlockingIOError):
            udp.recvfrom(2048)
        with pytest.raises(BlockingIOError):
            tcp.accept()
        assert DB_HOST not in by_address(view)  # a neighbour of core-sw1, but outside 127.0.77.0/30
    finally:
        udp.close()
        tcp.close()


def test_the_cli_runs_and_approves(tmp_path: Path, lab: LabNetwork, capsys: pytest.CaptureFixture[str]) -> None:
    creds = tmp_path / "creds.yaml"
    creds.write_text(f"snmp:\n  - {{version: 2c, community: {COMMUNITY}, port: {lab.port}}}\n")
    data = ["--data-dir", str(tmp_path / "data")]
    bad = run_cli("discover", "run", "--range", "0.0.0.0/0", "--credentials", creds, *data)  # the installed command
    assert_clean_error(bad, "/0 range is the whole Internet")
    settings = Settings(data_dir=tmp_path / "data")

    def cli(*argv: str) -> tuple[int, str]:  # the rest in this process: the same code, without a Python start each
        code = cmd_discover(build_parser().parse_args(["discover", *argv, *data]), settings)
        out = capsys.readouterr()
        assert COMMUNITY not in out.out + out.err
        return code, out.out + out.err

    assert cli("run", "--range", "127.0.77.0/29")[1].strip().endswith("credentials are never taken from the command line")
    code, out = cli("run", "--range", "127.0.77.0/29", "--seed", "127.0.77.1", "--credentials", str(creds))
    assert code == 0 and "run 1: done" in out and "core-sw1" in out, out
    code, out = cli("approve", "1", "--all")
    assert code == 0, out
    assert "added core-sw1 (127.0.77.1)" in out and "added ap1.lab.test (127.0.77.3) behind core-sw1" in out


def test_neighbours_are_read_on_demand_and_reruns_come_due(app_env: AppEnv, lab: LabNetwork) -> None:
    admin = bearer(app_env.token("ada", "admin"))
    body = {"name": "core", "address": "127.0.77.1", "snmp": {"version": "2c", "community": COMMUNITY, "port": lab.port}}
    device = app_env.client.post("/api/v1/devices", headers=admin, json=body).json()["id"]
    read = app_env.client.post(f"/api/v1/devices/{device}/neighbours/refresh", headers=admin)
    assert read.status_code == 200 and read.json()["count"] == 3, read.text
    assert {n["protocol"] for n in read.json()["items"]} == {"lldp", "cdp"}
    bare = app_env.client.post("/api/v1/devices", headers=admin, json={"name": "bare", "address": "127.0.77.5"}).json()["id"]
    assert app_env.client.post(f"/api/v1/devices/{bare}/neighbours/refresh", headers=admin).status_code == 409

    started = app_env.client.post("/api/v1/discovery/runs", headers=admin,
                                  json=run_body(lab, ranges=["127.0.77.1/32"], seed=None, every=15))
    view = wait_done(app_env.client, admin, started.json()["id"])
    assert view["next_at"] == pytest.approx(view["finished_at"] + 900)
    assert discovery.due(app_env.svc, view["next_at"] - 1) == []
    assert discovery.due(app_env.svc, view["next_at"] + 1) == [view["id"]]
    again = discovery.rerun(app_env.svc, None, None, view["id"])
    assert discovery.due(app_env.svc, view["next_at"] + 1) == []  # the schedule moves to the new run
    assert discovery.run_view(app_env.svc, again)["previous_id"] == view["id"]
