"""The on-call path's shared parts (the path test and `bench.oncall`): the JSON API as an operator, and Chromium's
throttled mobile profile (the "Slow 4G" preset of DevTools and a 4x CPU slowdown) through CDP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from playwright.sync_api import BrowserContext, CDPSession, Page

from server.actions.verify import Pace
from server.store import accounts
from tests.peers.snmpd_netns import VETH, NetnsSnmpd
from tests.server.actions_helpers import password_hash
from tests.server.app_fleet import LiveServer
from tests.server.netns_helpers import poll_until_port

SLOW_4G = {"offline": False, "latency": 562.5, "downloadThroughput": 180_000, "uploadThroughput": 84_375}
CPU_SLOWDOWN = 4
# The example catalog's port bounce, with a shorter pause and hold (two checks at the switch's 5 s interval).
PORT_BOUNCE = """
  - id: port-bounce
    title: Bounce a switch port
    applies_to: {kinds: [switch], rules: [interface-down, interface-errors]}
    danger: medium
    timeout: 30
    params:
      - {name: ifindex, type: interface, title: Port}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 2}
      - wait: 2
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: {repoll: true, delay: 2, within: 60, hold: 2 polls}
"""
# Lab actions (no verification) that set either end of the namespace's veth pair up or down.
LAB_ACTIONS = """
  - id: port-up
    title: Port up
    applies_to: {kinds: [switch]}
    params:
      - {name: ifindex, type: interface}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 1}
    verify: false
  - id: port-down
    title: Port down
    applies_to: {kinds: [switch]}
    params:
      - {name: ifindex, type: interface}
    snmp:
      - set: {oid: "1.3.6.1.2.1.2.2.1.7.{ifindex}", type: integer, value: 2}
    verify: false
"""


def throttle(context: BrowserContext, page: Page) -> CDPSession:
    """Slow 4G and a 4x slower CPU for this page (its navigations included), and Slow 4G for the service workers:
    a page the service worker controls has its requests fetched by the worker, which the page's emulation does not
    slow down (measured: 0.2 s instead of 0.8-1.6 s a navigation)."""
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", SLOW_4G)
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": CPU_SLOWDOWN})
    browser = context.browser
    if browser is not None:
        _throttle_workers(browser.new_browser_cdp_session())
    return cdp


def _throttle_workers(cdp: CDPSession) -> None:
    """Slow 4G for every running service worker, through a (non-flat) session to its target; an attached session
    also keeps the worker from being stopped when idle, so the emulation lasts."""
    answers: list[dict[str, Any]] = []
    cdp.on("Target.receivedMessageFromTarget", lambda event: answers.append(event))
    workers = [t for t in cdp.send("Target.getTargets")["targetInfos"] if t["type"] == "service_worker"]
    for n, target in enumerate(workers):
        session = cdp.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": False})["sessionId"]
        for k, (method, params) in enumerate((("Network.enable", {}), ("Network.emulateNetworkConditions", SLOW_4G))):
            message = json.dumps({"id": 1000 * (n + 1) + k, "method": method, "params": params})
            cdp.send("Target.sendMessageToTarget", {"sessionId": session, "message": message})
    if not workers:
        raise AssertionError("no service worker to throttle: wait until it controls the page")
    wanted = 2 * len(workers)
    deadline = time.monotonic() + 10
    while sum('"result"' in a.get("message", "") for a in answers) < wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"service worker throttling not confirmed: {answers}")
        cdp.send("Target.getTargets")  # the sync API delivers CDP events while a call waits: this one is cheap


class QuickPace(Pace):
    """Verification's clock with its waits (the delay, the pauses between checks, the hold between two checks) cut
    to at most REAL_PAUSE of real time each (the switch's snmpd does not cache its ifTable: the next check reads the
    port as it is): its clocks jump the rest."""

    REAL_PAUSE = 0.25

    def __init__(self) -> None:
        self.ahead = 0.0
        super().__init__(now=lambda: time.monotonic() + self.ahead, wall=lambda: time.time() + self.ahead, sleep=self._sleep)

    async def _sleep(self, seconds: float) -> None:
        real = min(seconds, self.REAL_PAUSE)
        self.ahead += seconds - real
        await asyncio.sleep(real)


class Api:
    """The JSON API as an operator with a bearer token."""

    def __init__(self, server: LiveServer) -> None:
        with server.svc.engine.begin() as conn:
            user_id = accounts.insert_user(conn, "api-op", password_hash(), "admin")
            token = accounts.new_token(conn, user_id, "test")
        self.client = httpx.Client(base_url=server.url, timeout=30)
        self._token = token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=self.headers(), **kw)
        assert r.status_code < 300, (path, r.text)
        return r.json()

    def run(self, action: str, device: int, port: str) -> None:
        run_id = self("POST", f"/api/v1/actions/{action}/run", json={"device": device, "params": {"ifindex": port}})["id"]
        deadline = time.monotonic() + 60
        while not self("GET", f"/api/v1/runs/{run_id}")["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def arm_switch(api: Api, switch: NetnsSnmpd) -> int:
    """The namespace's snmpd as switch sw-ns (5 s interval, SET credentials), both ends of its port up and seen up
    (so interface-down is armed); returns its device id."""
    snmp = {"port": switch.port, "version": "2c", "community": "public", "write": {"community": "private"}}
    spec = {"name": "sw-ns", "address": "127.0.0.1", "kind": "switch", "interval": 5, "snmp": snmp}
    device = int(api("POST", "/api/v1/devices", json=spec)["id"])
    api("POST", f"/api/v1/devices/{device}/poll")
    for port in VETH:
        api.run("port-up", device, port)
    poll_until_port(api, device, VETH[0], "up")
    return device


def far_end_down(api: Api, device: int) -> None:
    """The far end of the port shuts: pn0 loses its link and the next poll sees it down (the alert fires)."""
    api.run("port-down", device, VETH[1])
    poll_until_port(api, device, VETH[0], "down")
