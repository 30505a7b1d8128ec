"""`pocketnoc demo` as a user runs it: its actions really set the simulator, and the simulator ends with it."""

from __future__ import annotations

import contextlib
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import bearer, run_cli
from tests.server.demo_helpers import IF_ADMIN, RunningDemo, snmp_get


# ---------------------------------------------------------------- `pocketnoc demo` as a user runs it
def _snmpsim_pids(data_dir: Path) -> list[int]:
    """snmpsim processes serving this data dir's recordings (from /proc, like pgrep -f)."""
    marker = f"--data-dir={(data_dir / 'demo-sim' / 'recordings').resolve()}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and any(b"snmpsim" in arg for arg in cmdline) and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


def _wait_gone(data_dir: Path, seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := _snmpsim_pids(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(scope="module")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], RunningDemo]]:
    """A running `pocketnoc demo` (a start takes seconds): the one the last test left running, else a new one. The
    tests that end it (a kill, a closed terminal) take it last; each also passes on its own."""
    started: list[RunningDemo] = []

    def running() -> RunningDemo:
        if not started or started[-1].process.poll() is not None:
            started.append(RunningDemo(tmp_path_factory.mktemp("demo") / "data"))
        return started[-1]

    yield running
    for demo_run in started:
        demo_run.stop()


def _signed_in(demo_run: RunningDemo) -> httpx.Client:
    client = httpx.Client(base_url=demo_run.url, timeout=30)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
    assert token, page.text
    answer = client.post("/login", data={"username": "admin", "password": demo_run.password,
                                         "csrf_token": token.group(1), "next": "/"})
    assert answer.status_code == 303, answer.text
    return client


def _device_id(client: httpx.Client, name: str) -> int:
    answer = client.get("/api/v1/devices")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    items = body["items"] if isinstance(body, dict) else body
    return int(next(d["id"] for d in items if d["name"] == name))


def test_the_demo_offers_actions_that_really_set_the_simulator(running_demo: Callable[[], RunningDemo]) -> None:
    demo_run = running_demo()  # left running: the next test kills it and sees the simulator go with it
    with contextlib.closing(_signed_in(demo_run)) as client:
        switch_id, server_id = _device_id(client, "access-sw2"), _device_id(client, "web-01")
        api_token = run_cli("token", "create", "admin", "--data-dir", demo_run.data_dir).stdout.splitlines()[-1]
        # The switch's kind is known after its first poll; then its page offers the port actions. Its first
        # scheduled turn may be up to an interval (30 s) away: ask for it now, as "Poll now" does (a 409 means the
        # turn is still running, which serves as well).
        polled = httpx.post(f"{demo_run.url}/api/v1/devices/{switch_id}/poll", headers=bearer(api_token), timeout=60)
        assert polled.status_code in (200, 202, 409), polled.text
        deadline = time.monotonic() + 90
        page = client.get(f"/devices/{switch_id}").text
        while "Enable a switch port" not in page and time.monotonic() < deadline:
            time.sleep(0.2)
            page = client.get(f"/devices/{switch_id}").text
        assert "Bounce a switch port" in page and "Enable a switch port" in page, page
        assert "No actions are configured" not in page
        server_page = client.get(f"/devices/{server_id}").text
        assert "Bounce a switch port" not in server_page
        assert "No action in the catalog applies to this device." in server_page
        # Port 5 of access-sw2 is recorded administratively down; enabling it is a real SNMP SET.
        device = {"address": "127.0.77.4", "snmp": {"port": demo_run.sim_port, "community": "access-sw2"}}
        assert snmp_get(device, f"{IF_ADMIN}.5")[f".{IF_ADMIN}.5"] == "2"
        started = httpx.post(f"{demo_run.url}/api/v1/actions/port-enable/run", headers=bearer(api_token),
                             json={"device": switch_id, "params": {"ifindex": 5}}, timeout=30)
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        deadline = time.monotonic() + 60
        while snmp_get(device, f"{IF_ADMIN}.5")[f".{IF_ADMIN}.5"] != "1" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert snmp_get(device, f"{IF_ADMIN}.5")[f".{IF_ADMIN}.5"] == "1"
        run = httpx.get(f"{demo_run.url}/api/v1/runs/{run_id}", headers=bearer(api_token), timeout=30).json()
        # The command speaks the port's name too (the catalog's port is `type: interface`, chosen by name).
        named = "SET 1.3.6.1.2.1.2.2.1.7.5 INTEGER 1  (Gi1/0/5: admin status → up)"
        assert (run["action_id"], run["command"]) == ("port-enable", named), run


def test_a_killed_demo_takes_the_simulator_with_it(running_demo: Callable[[], RunningDemo]) -> None:
    demo_run = running_demo()
    try:
        assert _snmpsim_pids(demo_run.data_dir), "snmpsim is not running"
        demo_run.process.send_signal(signal.SIGKILL)
        demo_run.process.wait(timeout=10)
        assert _wait_gone(demo_run.data_dir, 5) == []
    finally:
        demo_run.stop()


def test_a_closed_terminal_stops_the_demo_cleanly(tmp_path: Path) -> None:
    demo_run = RunningDemo(tmp_path / "data")
    try:
        demo_run.process.send_signal(signal.SIGHUP)
        assert demo_run.process.wait(timeout=30) == 0
        assert _wait_gone(demo_run.data_dir, 5) == []
        pid_file = demo_run.data_dir / "demo-sim" / "recordings.snmpsim" / "snmpsim.pid"
        assert not pid_file.exists()  # stopped in order, not killed behind its back
    finally:
        demo_run.stop()
