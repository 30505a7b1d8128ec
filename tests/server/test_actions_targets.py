"""Port actions name ports, not numbers: chosen from the switch's ports by name and state, filled in from the alert,
the management port and the uplink guarded; and a fix counts only once it has held (a real snmpd in a private
network namespace with a veth pair, real polling, real alerts; verification's clock is a fake the test advances)."""

from __future__ import annotations

import asyncio
import html
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.actions.runner import manager
from server.actions.targets import DeviceView, interfaces
from server.actions.verify import HOLD_STEP_MAX, Pace
from server.store import prefs
from tests.peers.snmpd_netns import VETH, NetnsSnmpd
from tests.server.actions_helpers import ActionEnv, make_env
from tests.server.conftest import sign_in
from tests.server.netns_helpers import poll_until_port
from tests.server.oncall_helpers import LAB_ACTIONS

CATALOG = """
actions:
  - id: port-enable
    title: Enable a port
    applies_to: {kinds: [switch], rules: [interface-down]}
    params:
      - {name: ifindex, type: interface, title: Port}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: {repoll: true, delay: 1, within: 60, hold: 2 min}
  - id: port-enable-held-long
    title: Enable a port (held 10 min)
    applies_to: {kinds: [switch]}
    params:
      - {name: ifindex, type: interface, title: Port}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: {repoll: true, delay: 1, within: 60, hold: 10 min}
""" + LAB_ACTIONS  # port-down, port-up
REAL_PAUSE = 0.05  # seconds of real time a verification wait takes (the fake clock jumps the whole wait)


class FakePace(Pace):
    """Verification's clock: sleeping advances it at once, with a real pause of at most REAL_PAUSE (the switch's
    snmpd does not cache its ifTable, so the next check reads the port as the kernel has it)."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.wall_t = 1_800_000_000.0
        self.sleeps: list[float] = []
        self.on_hold: list[Any] = []  # called at the first waits between checks of a fix being held
        super().__init__(now=lambda: self.t, wall=lambda: self.wall_t, sleep=self._sleep)

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        self.wall_t += seconds
        if seconds == HOLD_STEP_MAX and self.on_hold:
            self.on_hold.pop(0)()
        await asyncio.sleep(min(seconds, REAL_PAUSE))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    # flap_settle_seconds=0: the hold window is what is tested here; a flapping guard would keep the alert open
    yield from make_env(tmp_path, CATALOG, poll=True, down_after_failures=1, flap_settle_seconds=0)


def _switch(env: ActionEnv, switch: NetnsSnmpd) -> int:
    manager(env.svc).pace = FakePace()  # no test waits out a stability window in real time
    env.add_device({"name": "core", "address": "127.0.0.1", "kind": "switch", "interval": 3600})
    snmp = {"port": switch.port, "version": "2c", "community": "public", "write": {"community": "private"}}
    spec = {"name": "sw-ns", "address": "127.0.0.1", "kind": "switch", "interval": 3600, "parent": "core", "snmp": snmp}
    device = env.add_device({**spec, "ports": {"uplink": VETH[1]}})
    assert env.client.post(f"/api/v1/devices/{device}/poll", headers=env.headers()).status_code == 200
    return device


def _down_alert(env: ActionEnv, switch: NetnsSnmpd, device: int) -> dict[str, Any]:
    """Both ends up (armed), then the peer end down: pn0 loses carrier and interface-down fires for it."""
    a, b = switch.if_index(VETH[0]), switch.if_index(VETH[1])
    for port in (VETH[0], VETH[1]):
        r = env.run("port-enable", device, params={"ifindex": port}, confirm="sw-ns")
        assert r.status_code == 202, r.text
        env.wait(r.json()["id"])
    poll_until_port(env, device, a, "up")
    env.wait(env.run("port-down", device, params={"ifindex": b}, confirm="sw-ns").json()["id"])
    poll_until_port(env, device, a, "down")
    found = [x for x in env.client.get(f"/api/v1/alerts?device={device}", headers=env.headers()).json()["items"]
             if x["rule"] == "interface-down"]  # fmt: skip
    assert found and found[0]["labels"]["ifIndex"] == str(a), found
    return dict(found[0])


def test_ports_are_chosen_by_name_and_the_management_port_and_uplink_need_the_name_typed(
    env: ActionEnv, netns_switch: NetnsSnmpd
) -> None:
    device = _switch(env, netns_switch)
    a, b = netns_switch.if_index(VETH[0]), netns_switch.if_index(VETH[1])
    offered = env.client.get(f"/api/v1/actions?device={device}", headers=env.headers()).json()["items"]
    choices = {c["name"]: c for c in next(x for x in offered if x["id"] == "port-enable")["choices"]["ifindex"]}
    assert set(choices) >= {"lo", VETH[0], VETH[1]}, choices
    assert choices[VETH[0]]["value"] == a and not choices[VETH[0]]["dangerous"]
    # lo holds 127.0.0.1, the address pocketnoc polls (IP-MIB ipAdEntIfIndex): the port it manages the switch through.
    assert choices["lo"]["dangerous"] and "manages sw-ns" in choices["lo"]["label"], choices["lo"]
    assert choices[VETH[1]]["dangerous"] and "uplink to core" in choices[VETH[1]]["label"]
    assert re.fullmatch(rf"{VETH[0]} · (down|admin down|up)", choices[VETH[0]]["label"]), choices[VETH[0]]["label"]
    # By name or by ifIndex; the preview says the port's name, not only the OID.
    preview = env.client.post("/api/v1/actions/port-enable/preview", json={"device": device, "params": {"ifindex": VETH[0]}},
                              headers=env.headers()).json()  # fmt: skip
    assert preview["params"] == {"ifindex": a} and preview["targets"]["ifindex"]["name"] == VETH[0]
    assert preview["command"] == f"SET 1.3.6.1.2.1.2.2.1.7.{a} INTEGER 1  ({VETH[0]}: admin status → up)"
    assert preview["needs"]["confirm_name"] is False
    # A port the switch does not have is refused with the ports it has.
    r = env.run("port-enable", device, params={"ifindex": 999})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "has no interface" in detail and "999" in detail and VETH[0] in detail
    # The uplink (and the management port) need the device name typed, even for a medium-danger action.
    uplink = env.client.post("/api/v1/actions/port-down/preview", json={"device": device, "params": {"ifindex": b}},
                             headers=env.headers()).json()  # fmt: skip
    assert uplink["needs"]["confirm_name"] is True and uplink["targets"]["ifindex"]["dangerous"]
    r = env.run("port-down", device, params={"ifindex": b})
    assert r.status_code == 422 and "uplink to core" in r.json()["detail"] and "sw-ns" in r.json()["detail"]
    r = env.run("port-down", device, params={"ifindex": "lo"})
    assert r.status_code == 422 and "manages sw-ns through this port" in r.json()["detail"]
    assert env.audit("action.refused")[-1]["detail"]["status"] == 422
    assert netns_switch.admin_up("lo")  # nothing was sent


def test_an_action_opened_from_the_alert_arrives_with_its_port_and_rows_carry_their_actions(
    env: ActionEnv, netns_switch: NetnsSnmpd
) -> None:
    device = _switch(env, netns_switch)
    alert = _down_alert(env, netns_switch, device)
    a = netns_switch.if_index(VETH[0])
    prefilled = env.client.get(f"/api/v1/actions?device={device}&alert={alert['id']}", headers=env.headers()).json()
    assert prefilled["items"][0]["id"] == "port-enable" and prefilled["items"][0]["prefill"] == {"ifindex": str(a)}
    env.client.cookies.clear()
    sign_in(env.client, "operator")
    page = env.client.get(f"/alerts/{alert['id']}").text
    link = html.unescape(re.search(r'href="(/devices/\d+/actions/port-enable\?[^"]+)"', page).group(1))  # type: ignore[union-attr]
    assert f"param_ifindex={a}" in link and f"alert={alert['id']}" in link
    confirm = env.client.get(link).text
    assert re.search(rf'<option value="{a}" selected>{VETH[0]} · down', confirm), confirm
    assert f"({VETH[0]}: admin status → up)" in html.unescape(confirm)  # the command is shown at once, port named
    assert 'name="confirm"' not in confirm
    # The device page starts with the port that is wrong, and its row carries its actions, port filled in.
    device_page = env.client.get(f"/devices/{device}").text
    problems = device_page.split("Ports that need attention", 1)[1].split("</ul>", 1)[0]
    assert f">{VETH[0]}</strong>" in problems and ">down</span>" in problems and ">lo</strong>" not in problems
    assert f'href="/devices/{device}/actions/port-enable?param_ifindex={a}"' in problems
    assert re.search(r"<details class=\"more-rows\"><summary>\d+ more ports? without problems</summary>", device_page)
    # The filter works without JavaScript: a query parameter.
    filtered = env.client.get(f"/devices/{device}?q={VETH[1]}").text
    assert f">{VETH[1]}</strong>" in filtered and f">{VETH[0]}</strong>" not in filtered and "1 of " in filtered
    # The interface page carries the actions too.
    iface = env.client.get(f"/devices/{device}/interfaces/{a}").text
    assert f'href="/devices/{device}/actions/port-enable?param_ifindex={a}"' in iface


def test_a_fix_counts_once_it_held_for_the_stability_window(env: ActionEnv, netns_switch: NetnsSnmpd) -> None:
    device = _switch(env, netns_switch)
    alert = _down_alert(env, netns_switch, device)
    pace = manager(env.svc).pace = FakePace()
    run = env.wait(env.run("port-enable", device, params={"ifindex": VETH[1]}, alert=alert["id"], confirm="sw-ns").json()["id"])
    assert run["verification"] == "fixed", run["verification_detail"]
    assert run["verification_detail"].startswith("verified — held for 2 min (3 checks)"), run["verification_detail"]
    assert sum(pace.sleeps) >= 120 and max(pace.sleeps) <= 60  # re-checked through the window, fake time
    assert env.client.get(f"/api/v1/alerts/{alert['id']}", headers=env.headers()).json()["status"] == "resolved"
    page = env.client.get(f"/runs/{run['id']}", headers=env.headers()).text
    assert "verified — held for 2 min" in html.unescape(page)


def test_a_fix_that_fails_again_inside_the_window_reopens_the_alert(env: ActionEnv, netns_switch: NetnsSnmpd) -> None:
    device = _switch(env, netns_switch)
    alert = _down_alert(env, netns_switch, device)
    pace = manager(env.svc).pace = FakePace()
    pace.on_hold = [lambda: netns_switch._nsenter("ip", "link", "set", VETH[1], "down")]  # the cable goes bad again
    # A long window (11 checks a fake minute apart): the cable goes bad at the first wait, and a later check sees it.
    r = env.run("port-enable-held-long", device, params={"ifindex": VETH[1]}, alert=alert["id"], confirm="sw-ns")
    run = env.wait(r.json()["id"])
    assert run["verification"] == "regressed", run
    found = re.match(r"fixed, then failed again at (\S+Z) \(after \d+ (s|min)\)", run["verification_detail"])
    assert found, run["verification_detail"]  # ISO UTC in the API
    with env.svc.engine.begin() as conn:  # pages say it in the reader's own time zone
        user_id = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'operator'").scalar_one()
        prefs.set_tz(conn, user_id, "Asia/Kathmandu", auto=False)
    local = datetime.fromisoformat(found[1]).astimezone(ZoneInfo("Asia/Kathmandu")).strftime("%Y-%m-%d %H:%M:%S +0545")
    run_page = html.unescape(env.client.get(f"/runs/{run['id']}", headers=env.headers()).text)
    assert f"failed again at {local} (after" in run_page and found[1] not in run_page
    state = env.client.get(f"/api/v1/alerts/{alert['id']}", headers=env.headers()).json()
    assert state["status"] == "firing", state
    assert any(e["kind"] == "reopened" and f"run #{run['id']}" in e["text"] for e in state["events"]), state["events"]
    open_ = [x for x in env.client.get(f"/api/v1/alerts?device={device}", headers=env.headers()).json()["items"]
             if x["rule"] == "interface-down"]  # fmt: skip
    assert [x["id"] for x in open_] == [alert["id"]], open_  # one alert tells the story, not a new one beside it
    page = env.client.get(f"/alerts/{alert['id']}", headers=env.headers()).text
    assert "fixed, then failed again" in page
    assert f"failed again at {local} (after" in html.unescape(page) and found[1] not in page


@pytest.mark.parametrize(
    ("rows", "addresses", "config", "dangerous"),
    [
        ([("Gi1/0/1", ""), ("Gi1/0/48", "uplink core-sw1")], [], {}, {"Gi1/0/48": "uplink to core-sw1"}),
        ([("Gi1/0/1", ""), ("Gi1/0/48", "")], [("192.0.2.10", 1)], {}, {"Gi1/0/1": "pocketnoc manages sw through this port"}),
        ([("Gi1/0/1", ""), ("Gi1/0/2", "")], [("192.0.2.99", 1)], {"management_interface": "Gi1/0/2"},
         {"Gi1/0/2": "pocketnoc manages sw through this port"}),
        ([("Gi1/0/1", "to core-sw1"), ("Gi1/0/2", "")], [], {"uplink_interface": "Gi1/0/2"}, {"Gi1/0/2": "uplink to core-sw1"}),
    ],
)
def test_which_ports_are_dangerous(
    rows: list[tuple[str, str]], addresses: list[tuple[str, int]], config: dict[str, str], dangerous: dict[str, str]
) -> None:
    tables = {
        "interfaces": [{"index": n, "name": name, "alias": alias, "oper": "up", "admin": "up"} for n, (name, alias) in
                       enumerate(rows, 1)],
        "ip_addresses": [{"address": addr, "if_index": i} for addr, i in addresses],
    }  # fmt: skip
    found = interfaces(DeviceView("sw", "192.0.2.10", "core-sw1", tables, **config))
    assert {c.name: c.danger for c in found if c.danger} == dangerous
