"""SNMP SET actions against real net-snmp snmpd: write credentials (v2c and v3) apart from read ones, and switch
ports that really go down and up (a veth pair in a private network namespace, read back from the kernel)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import sql
from tests.peers.snmpd import DEFAULT_USERS, SnmpdPeer, start_snmpd
from tests.peers.snmpd_netns import VETH, NetnsSnmpd
from tests.server.actions_helpers import ActionEnv, make_env
from tests.server.netns_helpers import poll_until_port

CATALOG = """
actions:
  - id: set-contact
    title: Set the contact
    danger: low
    params:
      - {name: contact, type: string, pattern: "[A-Za-z0-9 @._-]{1,64}", max_length: 64}
    snmp:
      - set: {oid: "1.3.6.1.2.1.1.4.0", type: string, value: "{contact}"}
    verify: false
  - id: port-enable
    title: Enable a port
    applies_to: {kinds: [switch], rules: [interface-down]}
    params:
      - {name: ifindex, type: integer, min: 1, max: 100000}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: {repoll: true, delay: 1, within: 20}
  - id: port-up
    title: Port up (unverified)
    applies_to: {kinds: [switch]}
    params:
      - {name: ifindex, type: integer, min: 1, max: 100000}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: false
  - id: port-down
    title: Port down (unverified)
    applies_to: {kinds: [switch]}
    params:
      - {name: ifindex, type: integer, min: 1, max: 100000}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 2}
    verify: false
  - id: port-disable
    title: Disable a port
    applies_to: {kinds: [switch]}
    role: admin
    danger: high
    params:
      - {name: ifindex, type: integer, min: 1, max: 100000}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 2}
    verify: false
  - id: port-bounce
    title: Bounce a port
    applies_to: {kinds: [switch]}
    params:
      - {name: ifindex, type: integer, min: 1, max: 100000}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 2}
      - wait: 3
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: false
"""
WRITER = ("createUser netops SHA-256 writeauth256 AES writepriv256", "rwuser netops priv -V all")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    yield from make_env(tmp_path, CATALOG, poll=True, down_after_failures=1)


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    # No sysContact line: a configured sysContact is read-only in net-snmp.
    peer = start_snmpd(tmp_path, sys_contact=None, extra_lines=WRITER)
    yield peer
    peer.stop()


def _contact(peer: SnmpdPeer, community: str = "public") -> str:
    env = {"MIBS": "", "MIBDIRS": "/nonexistent", "PATH": "/usr/bin:/bin"}
    cmd = ["snmpget", "-v2c", "-c", community, "-Oqv", f"127.0.0.1:{peer.port}", "1.3.6.1.2.1.1.4.0"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20, check=True).stdout.strip().strip('"')


def _device(env: ActionEnv, name: str, port: int, snmp: dict[str, Any], kind: str = "generic") -> int:
    return env.add_device({"name": name, "address": "127.0.0.1", "kind": kind, "interval": 3600, "snmp": {"port": port, **snmp}})


def test_a_set_uses_the_write_community_and_is_read_back(env: ActionEnv, snmpd: SnmpdPeer) -> None:
    device = _device(env, "sw-v2", snmpd.port, {"version": "2c", "community": "public", "write": {"community": "private"}})
    run = env.wait(env.run("set-contact", device, params={"contact": "noc@example.test"}).json()["id"])
    assert run["status"] == "succeeded", run
    assert run["command"] == "SET 1.3.6.1.2.1.1.4.0 STRING 'noc@example.test'"
    assert "read back 1.3.6.1.2.1.1.4.0 = 'noc@example.test'" in run["stdout"]
    assert _contact(snmpd) == "noc@example.test"
    # The write community is a secret: stored sealed, shown only as set.
    spec = env.client.get(f"/api/v1/devices/{device}", headers=env.headers("admin")).json()["spec"]["snmp"]
    assert spec["write"] == {"context": "", "community_set": True, "auth_key_set": False, "priv_key_set": False}
    with env.svc.reader.connect() as conn:
        raw = sql.one(conn, "SELECT spec, secrets FROM devices WHERE id = :id", id=device)
    assert b"private" not in (raw.secrets or b"") and "private" not in str(raw.spec)


def test_read_credentials_are_never_used_to_write(env: ActionEnv, snmpd: SnmpdPeer) -> None:
    # The read-only community given as the write one: snmpd refuses the SET, and the run says so.
    device = _device(env, "sw-ro", snmpd.port, {"version": "2c", "community": "private", "write": {"community": "public"}})
    before = _contact(snmpd)
    run = env.wait(env.run("set-contact", device, params={"contact": "attacker"}).json()["id"])
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert "refused" in run["stderr"] and ("noAccess" in run["stderr"] or "notWritable" in run["stderr"])
    assert _contact(snmpd) == before
    # Neither community shows up in the failed run, its error or its audit entries.
    shown = json.dumps(run) + json.dumps(env.audit("action.run") + env.audit("action.finished"))
    assert "public" not in shown and "private" not in shown, shown
    # A device without write credentials is not offered SNMP actions at all.
    plain = _device(env, "sw-plain", snmpd.port, {"version": "2c", "community": "private"})
    r = env.run("set-contact", plain, params={"contact": "x"})
    assert r.status_code == 422 and "no SNMP write credentials" in r.json()["detail"]


def test_a_set_with_v3_write_credentials(env: ActionEnv, snmpd: SnmpdPeer) -> None:
    mon = DEFAULT_USERS[0]
    snmp = {
        "version": "3",
        "user": mon.name,
        "auth_protocol": "sha",
        "auth_key": mon.auth_key,
        "priv_protocol": "aes128",
        "priv_key": mon.priv_key,
        "write": {
            "user": "netops",
            "auth_protocol": "sha256",
            "auth_key": "writeauth256",
            "priv_protocol": "aes128",
            "priv_key": "writepriv256",
        },
    }
    device = _device(env, "sw-v3", snmpd.port, snmp)
    run = env.wait(env.run("set-contact", device, params={"contact": "v3 writer"}).json()["id"])
    assert run["status"] == "succeeded", run
    assert _contact(snmpd) == "v3 writer"
    shown = env.client.get(f"/api/v1/devices/{device}", headers=env.headers("admin")).json()["spec"]["snmp"]["write"]
    assert shown["user"] == "netops" and shown["auth_key_set"] and shown["priv_key_set"] and "auth_key" not in shown


def test_patching_one_write_credential_keeps_the_rest_of_the_block(env: ActionEnv, snmpd: SnmpdPeer) -> None:
    mon = DEFAULT_USERS[0]
    read = {"user": mon.name, "auth_protocol": "sha", "auth_key": mon.auth_key}
    read |= {"priv_protocol": "aes128", "priv_key": mon.priv_key}
    write = {"user": "netops", "auth_protocol": "sha256", "auth_key": "wrong-auth-key", "priv_protocol": "aes128"}
    device = _device(env, "sw-patch", snmpd.port, {"version": "3", **read, "write": {**write, "priv_key": "writepriv256"}})
    failed = env.wait(env.run("set-contact", device, params={"contact": "before fix"}).json()["id"])
    assert failed["status"] == "failed", failed
    # Only the write auth key changes: the write user, protocols and privacy key (and the read side) stay as stored.
    url, admin = f"/api/v1/devices/{device}", env.headers("admin")
    r = env.client.patch(url, json={"snmp": {"write": {"auth_key": "writeauth256"}}}, headers=admin)
    assert r.status_code == 200, r.text
    shown = r.json()["spec"]["snmp"]
    assert shown["user"] == mon.name and shown["auth_key_set"] and shown["priv_key_set"]
    assert shown["write"]["user"] == "netops" and shown["write"]["auth_protocol"] == "sha256"
    assert shown["write"]["priv_protocol"] == "aes128" and shown["write"]["priv_key_set"]
    run = env.wait(env.run("set-contact", device, params={"contact": "after fix"}).json()["id"])
    assert run["status"] == "succeeded", run
    assert _contact(snmpd) == "after fix"
    # A v2c write block: only the community changes; `"write": null` removes the block.
    v2 = _device(env, "sw-patch2", snmpd.port, {"version": "2c", "community": "public", "write": {"community": "public"}})
    r = env.client.patch(f"/api/v1/devices/{v2}", json={"snmp": {"write": {"community": "private"}}}, headers=admin)
    assert r.status_code == 200 and r.json()["spec"]["snmp"]["community_set"], r.text
    run = env.wait(env.run("set-contact", v2, params={"contact": "v2 after patch"}).json()["id"])
    assert run["status"] == "succeeded" and _contact(snmpd) == "v2 after patch", run
    r = env.client.patch(f"/api/v1/devices/{v2}", json={"snmp": {"write": None}}, headers=admin)
    assert r.status_code == 200 and "write" not in r.json()["spec"]["snmp"], r.text
    refused = env.run("set-contact", v2, params={"contact": "x"})
    assert refused.status_code == 422 and "no SNMP write credentials" in refused.json()["detail"]


def test_port_disable_and_enable_really_change_the_interface(env: ActionEnv, netns_switch: NetnsSnmpd) -> None:
    port = netns_switch.if_index(VETH[0])
    device = _device(
        env, "sw-ns", netns_switch.port, {"version": "2c", "community": "public", "write": {"community": "private"}}, "switch"
    )
    assert not netns_switch.admin_up(VETH[0])
    run = env.wait(env.run("port-up", device, params={"ifindex": port}).json()["id"])
    assert run["status"] == "succeeded", run
    assert f"read back 1.3.6.1.2.1.2.2.1.7.{port} = 1" in run["stdout"]
    assert netns_switch.admin_up(VETH[0])
    assert netns_switch.snmpget(f"1.3.6.1.2.1.2.2.1.7.{port}") == "1"
    r = env.run("port-disable", device, role="admin", params={"ifindex": port}, confirm="sw-ns", reason="loop on port")
    assert r.status_code == 202, r.text
    assert env.wait(r.json()["id"])["status"] == "succeeded"
    assert not netns_switch.admin_up(VETH[0])


def test_port_bounce_goes_down_then_up(env: ActionEnv, netns_switch: NetnsSnmpd) -> None:
    port = netns_switch.if_index(VETH[0])
    device = _device(
        env, "sw-ns", netns_switch.port, {"version": "2c", "community": "public", "write": {"community": "private"}}, "switch"
    )
    env.wait(env.run("port-up", device, params={"ifindex": port}).json()["id"])
    assert netns_switch.admin_up(VETH[0])
    run_id = env.run("port-bounce", device, params={"ifindex": port}).json()["id"]
    seen: list[bool] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = netns_switch.admin_up(VETH[0])
        if not seen or seen[-1] != state:
            seen.append(state)
        if seen[-2:] == [False, True]:
            break
        time.sleep(0.1)
    assert seen[-2:] == [False, True], seen
    run = env.wait(run_id)
    assert run["status"] == "succeeded" and "wait 3 s" in run["stdout"]
    assert run["stdout"].count("SET 1.3.6.1.2.1.2.2.1.7.") == 2


def test_enabling_the_peer_port_clears_the_interface_alert(env: ActionEnv, netns_switch: NetnsSnmpd) -> None:
    a, b = netns_switch.if_index(VETH[0]), netns_switch.if_index(VETH[1])
    device = _device(
        env, "sw-ns", netns_switch.port, {"version": "2c", "community": "public", "write": {"community": "private"}}, "switch"
    )
    for port in (a, b):  # both ends up: pn0 has carrier, and a poll sees it up (interface-down watches it from now)
        env.wait(env.run("port-up", device, params={"ifindex": port}).json()["id"])
    poll_until_port(env, device, a, "up")
    assert not env.client.get(f"/api/v1/alerts?device={device}", headers=env.headers()).json()["items"]
    env.wait(env.run("port-down", device, params={"ifindex": b}).json()["id"])  # the peer goes down: no carrier
    poll_until_port(env, device, a, "down")
    alerts = env.client.get(f"/api/v1/alerts?device={device}", headers=env.headers()).json()["items"]
    down = [x for x in alerts if x["rule"] == "interface-down"]
    assert down, alerts
    offered = env.client.get(f"/api/v1/actions?device={device}&alert={down[0]['id']}", headers=env.headers()).json()["items"]
    assert offered[0]["id"] == "port-enable" and offered[0]["suggested"]
    run = env.wait(env.run("port-enable", device, params={"ifindex": b}, alert=down[0]["id"]).json()["id"])
    assert run["status"] == "succeeded"
    assert run["verification"] == "fixed", run["verification_detail"]
    state = env.client.get(f"/api/v1/alerts/{down[0]['id']}", headers=env.headers()).json()
    assert state["status"] == "firing"  # cleared seconds after it fired: open until it has stayed clear (flapping guard)
    assert any(e["kind"] == "cleared" for e in state["events"])
