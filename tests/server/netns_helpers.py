"""Shared by the tests against a switch in its own network namespace (tests/peers/snmpd_netns.py): starting it
(the `netns_switch` fixture in conftest.py uses this) and polling a device until a port reads a state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.snmpd_netns import NetnsSnmpd, netns_available, start_netns_snmpd
from tests.server.actions_helpers import ActionEnv


def running_switch(tmp_path: Path) -> Iterator[NetnsSnmpd]:
    """snmpd with a veth pair (pn0, pn1) in a fresh network namespace, stopped after the yield; a skip where none can be made."""
    why = netns_available()
    if why:
        pytest.skip(why)
    peer = start_netns_snmpd(tmp_path)
    try:
        yield peer
    finally:
        peer.stop()


def poll_until_port(env: ActionEnv, device: int, index: int, oper: str, timeout: float = 30.0) -> None:
    """Poll the device now, again and again, until port `index` reads `oper` (snmpd caches its ifTable a few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        r = env.client.post(f"/api/v1/devices/{device}/poll", headers=env.headers())
        assert r.status_code == 200, r.text
        ports = env.client.get(f"/api/v1/devices/{device}", headers=env.headers()).json()["interfaces"]
        if any(p["index"] == index and p["oper"] == oper for p in ports):
            return
        assert time.monotonic() < deadline, f"port {index} never read {oper}: {ports}"
        time.sleep(0.5)
