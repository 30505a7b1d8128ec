"""Shared by the tests against a switch in its own network namespace (tests/peers/snmpd_netns.py): starting it
(the `netns_switch` fixture in conftest.py uses this) and polling a device through the JSON API until a port
reads a state (the action tests' ActionEnv and the on-call path's Api both reach it)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import httpx
import pytest

from tests.peers.snmpd_netns import NetnsSnmpd, netns_available, start_netns_snmpd


def running_switch(tmp_path: Path) -> Iterator[NetnsSnmpd]:
    """snmpd with a veth pair (pn0, pn1) in a fresh network namespace, stopped after the yield; a skip where none can be
    made. Its ifTable is not cached: tests wait for a port's state, never for snmpd's cache to expire."""
    why = netns_available()
    if why:
        pytest.skip(why)
    peer = start_netns_snmpd(tmp_path, iftable_cache=False)
    try:
        yield peer
    finally:
        peer.stop()


class Reaches(Protocol):
    """The JSON API as someone allowed to poll: a client (base URL set) and the headers to send."""

    @property
    def client(self) -> httpx.Client: ...

    def headers(self) -> dict[str, str]: ...


def poll_until_port(api: Reaches, device: int, port: int | str, oper: str, timeout: float = 30.0) -> None:
    """Poll the device now, again and again, until `port` (an ifIndex, or a name) reads `oper` (a veth end takes a
    moment to lose or gain its carrier after the other end changes)."""
    key = "index" if isinstance(port, int) else "name"
    deadline = time.monotonic() + timeout
    while True:
        r = api.client.post(f"/api/v1/devices/{device}/poll", headers=api.headers())
        assert r.status_code == 200, r.text
        ports = api.client.get(f"/api/v1/devices/{device}", headers=api.headers()).json()["interfaces"]
        if any(p[key] == port and p["oper"] == oper for p in ports):
            return
        assert time.monotonic() < deadline, f"port {port} never read {oper}: {ports}"
        time.sleep(0.2)
