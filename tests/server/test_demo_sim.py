"""The demo's simulated devices, checked through a real snmpsim with net-snmp's command-line tools."""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from server.config.settings import Settings
from server.demo import simvar
from server.demo.fleet import BUSY_PORT, FLAP_PORT, UNREACHABLE
from server.demo.inventory import ACTIONS as DEMO_ACTIONS
from server.demo.inventory import demo_devices, demo_settings, prepare_demo, run_demo_agents
from server.demo.recordings import write_recordings
from server.demo.sim import SimError, SimHandle, start_snmpsim
from tests.server.app_fleet import free_port
from tests.server.conftest import POCKETNOC, bearer, run_cli

BASE = "127.0.78."  # not the demo's 127.0.77.x, so a running demo cannot collide
FLAP_SECONDS = 4.0
IF_TABLE = "1.3.6.1.2.1.2.2.1"
IFX_TABLE = "1.3.6.1.2.1.31.1.1.1"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
EXAMPLE_ACTIONS = Path(__file__).resolve().parents[2] / "config" / "actions.example.yaml"
_ENV = {**os.environ, "MIBS": ""}  # numeric OIDs only: the snmp package ships no MIBs


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(tool: str, device: dict[str, Any], *oids: str, timeout: int = 5) -> subprocess.CompletedProcess[str]:
    address = f"{device['address']}:{device['snmp']['port']}"
    return subprocess.run(
        [tool, "-v2c", "-c", device["snmp"]["community"], "-On", "-Oqt", "-t", str(timeout), "-r", "1",
         address, *oids],
        capture_output=True, text=True, env=_ENV, timeout=60,
    )


def snmp_get(device: dict[str, Any], *oids: str) -> dict[str, str]:
    """OID -> value (quotes removed) from one snmpget."""
    result = _run("snmpget", device, *oids)
    assert result.returncode == 0, result.stderr
    return _parse(result.stdout)


def snmp_walk(device: dict[str, Any], oid: str) -> dict[str, str]:
    """OID -> value from an snmpbulkwalk of one subtree."""
    result = _run("snmpbulkwalk", device, oid)
    assert result.returncode == 0, result.stderr
    return {key: value for key, value in _parse(result.stdout).items() if key.startswith(f".{oid}.")}


def _parse(output: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(".1."):
            oid, _, value = line.partition(" ")
            values[oid] = value.strip('"')
    return values


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """A running demo on 127.0.78.x: device name -> inventory entry."""
    data_dir = tmp_path_factory.mktemp("demo")
    port = _free_udp_port()
    devices, recordings = prepare_demo(data_dir, base_address=BASE, port=port, flap_period=FLAP_SECONDS)
    assert len(list(recordings.glob("*.snmprec"))) >= 20
    handle = run_demo_agents(data_dir, base_address=BASE, port=port)
    try:
        yield {device["name"]: device for device in devices}
    finally:
        handle.stop()
    assert not handle.running()


def test_inventory_shape_and_wiring() -> None:
    devices = demo_devices()
    names = {device["name"] for device in devices}
    assert len(devices) >= 21 and len(names) == len(devices)
    assert len({device["address"] for device in devices}) == len(devices)
    for device in devices:
        assert device["address"].startswith("127.0.77.")
        assert device["interval"] == 30
        write = {"write": {"community": device["name"]}} if {"core", "access", "wan"} & set(device["tags"]) else {}
        assert device["snmp"] == {"version": "2c", "port": 1161, "community": device["name"], **write}
        assert device["parent"] is None or device["parent"] in names
    by_name = {device["name"]: device for device in devices}
    assert by_name["core-sw1"]["parent"] == "edge-rtr1"
    assert by_name["access-sw1"]["parent"] == "core-sw1"
    tags = {tag for device in devices for tag in device["tags"]}
    assert {"site-hq", "site-branch", "core", "access", "servers", "power", "print"} <= tags
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        demo_devices(base_address="192.0.2.")


def test_every_device_answers_its_sysname(demo: dict[str, dict[str, Any]]) -> None:
    answering = [device for name, device in demo.items() if name != UNREACHABLE.name]
    assert len(answering) >= 20
    for device in answering:
        assert snmp_get(device, SYS_NAME) == {f".{SYS_NAME}": device["name"]}


def test_unreachable_device_does_not_answer(demo: dict[str, dict[str, Any]]) -> None:
    result = _run("snmpget", demo[UNREACHABLE.name], SYS_NAME, timeout=1)
    assert result.returncode != 0
    assert "Timeout" in result.stdout + result.stderr


@pytest.mark.parametrize(("name", "ports"), [("access-sw1", 48), ("access-sw3", 24)])
def test_switch_iftable_has_one_row_per_port(demo: dict[str, dict[str, Any]], name: str, ports: int) -> None:
    device = demo[name]
    table = snmp_walk(device, IF_TABLE)
    assert len({oid.rsplit(".", 1)[1] for oid in table}) == ports
    assert snmp_get(device, "1.3.6.1.2.1.2.1.0") == {".1.3.6.1.2.1.2.1.0": str(ports)}
    statuses = [value for oid, value in table.items() if oid.startswith(f".{IF_TABLE}.8.")]
    assert "1" in statuses and "2" in statuses  # some ports up, some down
    aliases = snmp_walk(device, f"{IFX_TABLE}.18")
    assert len(aliases) == ports and "uplink core-sw1" in aliases.values()
    speeds = snmp_walk(device, f"{IFX_TABLE}.15")
    assert set(speeds.values()) <= {"100", "1000"}


def test_busy_port_counters_grow_with_time(demo: dict[str, dict[str, Any]]) -> None:
    device, index = demo[BUSY_PORT[0]], BUSY_PORT[1]
    hc_in, c32_in = f".{IFX_TABLE}.6.{index}", f".{IF_TABLE}.10.{index}"
    uptime = f".{SYS_UPTIME}"
    first, start = snmp_get(device, hc_in[1:], c32_in[1:], SYS_UPTIME), time.monotonic()
    time.sleep(1.0)
    second, elapsed = snmp_get(device, hc_in[1:], c32_in[1:], SYS_UPTIME), time.monotonic() - start
    rate = (int(second[hc_in]) - int(first[hc_in])) / elapsed
    assert 1e6 < rate < 1.25e9  # between 8 Mbit/s and a full 10G uplink
    assert (int(second[c32_in]) - int(first[c32_in])) % 2**32 == pytest.approx(
        int(second[hc_in]) - int(first[hc_in]), rel=0.05)
    assert int(first[hc_in]) % 2**32 == pytest.approx(int(first[c32_in]), abs=rate * 0.5)
    assert int(second[uptime]) - int(first[uptime]) == pytest.approx(elapsed * 100, abs=60)


def test_flapping_port_goes_down_and_up(demo: dict[str, dict[str, Any]]) -> None:
    device, index = demo[FLAP_PORT[0]], FLAP_PORT[1]
    status, changed = f"{IF_TABLE}.8.{index}", f"{IF_TABLE}.9.{index}"
    seen: dict[str, set[str]] = {"status": set(), "changed": set()}
    deadline = time.monotonic() + 6 * FLAP_SECONDS
    while seen["status"] != {"1", "2"} or len(seen["changed"]) < 2:
        assert time.monotonic() < deadline, seen
        values = snmp_get(device, status, changed)
        seen["status"].add(values[f".{status}"])
        seen["changed"].add(values[f".{changed}"])
        time.sleep(0.5)


def test_ups_reports_running_on_battery(demo: dict[str, dict[str, Any]]) -> None:
    ups = "1.3.6.1.2.1.33.1"
    values = snmp_get(demo["ups-01"], f"{ups}.2.1.0", f"{ups}.2.2.0", f"{ups}.2.3.0", f"{ups}.2.4.0",
                      f"{ups}.4.1.0", f"{ups}.4.4.1.5.1")
    assert values[f".{ups}.2.1.0"] == "2"  # batteryNormal
    assert int(values[f".{ups}.2.2.0"]) > 0  # seconds on battery
    assert values[f".{ups}.2.4.0"] == "40"  # charge %
    assert values[f".{ups}.4.1.0"] == "5"  # output source: battery
    assert int(values[f".{ups}.2.3.0"]) > 0 and 0 < int(values[f".{ups}.4.4.1.5.1"]) <= 100
    assert snmp_get(demo["ups-02"], f"{ups}.4.1.0") == {f".{ups}.4.1.0": "3"}  # normal


def test_printer_reports_low_toner(demo: dict[str, dict[str, Any]]) -> None:
    device = demo["printer-2f"]
    levels = snmp_walk(device, "1.3.6.1.2.1.43.11.1.1.9")
    descriptions = snmp_walk(device, "1.3.6.1.2.1.43.11.1.1.6")
    assert sorted(levels.values(), key=int)[0] == "5"
    assert any("Cartridge" in text for text in descriptions.values())
    status = snmp_get(device, "1.3.6.1.2.1.25.3.5.1.1.1", "1.3.6.1.2.1.25.3.2.1.5.1")
    assert status == {".1.3.6.1.2.1.25.3.5.1.1.1": "3", ".1.3.6.1.2.1.25.3.2.1.5.1": "3"}  # idle; warning


def test_hosts_have_their_unhealthy_touches(demo: dict[str, dict[str, Any]]) -> None:
    storage = "1.3.6.1.2.1.25.2.3.1"
    db = snmp_walk(demo["db-01"], storage)
    var = next(oid.rsplit(".", 1)[1] for oid, value in db.items()
               if oid.startswith(f".{storage}.3.") and value == "/var")
    assert int(db[f".{storage}.6.{var}"]) / int(db[f".{storage}.5.{var}"]) == pytest.approx(0.93, abs=0.005)
    load = snmp_get(demo["build-01"], "1.3.6.1.4.1.2021.10.1.3.1")[".1.3.6.1.4.1.2021.10.1.3.1"]
    assert float(load) > 8.0  # 8 cores, overloaded
    win = snmp_get(demo["dc-01"], "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0")
    assert "Windows Version 6.3" in win[".1.3.6.1.2.1.1.1.0"]
    assert win[".1.3.6.1.2.1.1.2.0"].startswith(".1.3.6.1.4.1.311.1.1.3.1.")
    cores = snmp_walk(demo["dc-01"], "1.3.6.1.2.1.25.3.3.1.2")
    assert len(cores) >= 2 and all(0 <= int(v) <= 100 for v in cores.values())


def test_counter_is_monotonic_and_wraps() -> None:
    params = {"rate": 1e6, "amp": 0.95, "period": 60.0, "phase": 1.0, "initial": 2**32 - 5e6, "bits": 64}
    values = [simvar.counter(params, t / 10) for t in range(0, 3000)]
    assert all(b >= a for a, b in itertools.pairwise(values))
    wrapped = [simvar.counter({**params, "bits": 32}, t / 10) for t in range(0, 3000)]
    assert wrapped == [value % 2**32 for value in values] and min(wrapped) < 2**31
    assert simvar.flap_status({"period": 10}, 5) == 1 and simvar.flap_status({"period": 10}, 15) == 2
    assert simvar.flap_change({"period": 10, "uptime": 500}, 25) == 500 + 20 * 100


def test_restart_on_same_data_replaces_a_stale_simulator(tmp_path: Path) -> None:
    recordings = tmp_path / "recordings"
    write_recordings(recordings)
    endpoint = [(f"{BASE}200", _free_udp_port())]
    first = start_snmpsim(recordings, endpoint, tmp_path / "sim.log")
    second: SimHandle | None = None
    try:
        # As if the parent had been killed: the new start must stop the old process, not collide with it.
        second = start_snmpsim(recordings, endpoint, tmp_path / "sim.log")
        assert first.process.wait(timeout=15) is not None
        assert second.running()
    finally:
        first.stop()
        if second is not None:
            second.stop()
            assert not second.running()


def test_start_refuses_an_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(SimError, match=r"no \.snmprec"):
        start_snmpsim(tmp_path, [(f"{BASE}201", _free_udp_port())], tmp_path / "sim.log")


# ---------------------------------------------------------------- writable objects and the demo's actions
IF_ADMIN, IF_OPER, SYS_LOCATION = f"{IF_TABLE}.7", f"{IF_TABLE}.8", "1.3.6.1.2.1.1.6.0"


def snmp_set(device: dict[str, Any], oid: str, kind: str, value: str) -> subprocess.CompletedProcess[str]:
    """One snmpset with the device's write community (the demo's switches take SETs)."""
    address = f"{device['address']}:{device['snmp']['port']}"
    return subprocess.run(
        ["snmpset", "-v2c", "-c", device["snmp"]["write"]["community"], "-On", "-Oqt", "-t", "5", "-r", "1",
         address, oid, kind, value],
        capture_output=True, text=True, env=_ENV, timeout=60,
    )


def test_switches_take_port_and_location_sets(demo: dict[str, dict[str, Any]]) -> None:
    switch, other = demo["access-sw3"], demo["access-sw1"]
    admin, oper = snmp_walk(switch, IF_ADMIN), snmp_walk(other, IF_ADMIN)
    port = next(int(oid.rpartition(".")[2]) for oid, value in admin.items()
                if value == "1" and oper.get(oid) == "1" and snmp_walk(switch, IF_OPER)[oid.replace(IF_ADMIN, IF_OPER)] == "1")
    assert snmp_get(switch, f"{IF_ADMIN}.{port}", f"{IF_OPER}.{port}") == {
        f".{IF_ADMIN}.{port}": "1", f".{IF_OPER}.{port}": "1"}
    assert snmp_set(switch, f"{IF_ADMIN}.{port}", "i", "2").returncode == 0
    # The SET sticks, the port reports down like a real one, and only on that switch.
    assert snmp_get(switch, f"{IF_ADMIN}.{port}", f"{IF_OPER}.{port}") == {
        f".{IF_ADMIN}.{port}": "2", f".{IF_OPER}.{port}": "2"}
    assert snmp_get(other, f"{IF_ADMIN}.{port}")[f".{IF_ADMIN}.{port}"] == "1"
    assert snmp_set(switch, f"{IF_ADMIN}.{port}", "i", "1").returncode == 0
    assert snmp_get(switch, f"{IF_OPER}.{port}")[f".{IF_OPER}.{port}"] == "1"
    # Values a real switch refuses are refused: not an admin status, not an integer, a read-only object.
    refused = snmp_set(switch, f"{IF_ADMIN}.{port}", "i", "7")
    assert refused.returncode != 0 and "wrongValue" in refused.stderr
    refused = snmp_set(switch, f"{IF_ADMIN}.{port}", "s", "down")
    assert refused.returncode != 0 and "wrongType" in refused.stderr
    read_only = snmp_set(switch, SYS_NAME, "s", "renamed")  # snmpsim answers noSuchInstance, not an error status
    assert read_only.returncode != 0 or "No Such Instance" in read_only.stdout
    assert snmp_get(switch, SYS_NAME)[f".{SYS_NAME}"] == "access-sw3"
    assert snmp_set(switch, SYS_LOCATION, "s", "HQ / moved, rack B1").returncode == 0
    assert snmp_get(switch, SYS_LOCATION)[f".{SYS_LOCATION}"] == "HQ / moved, rack B1"


def test_only_network_devices_get_write_credentials() -> None:
    devices = {device["name"]: device for device in demo_devices()}
    assert "write" in devices["core-sw1"]["snmp"] and "write" in devices["edge-rtr1"]["snmp"]
    assert "write" not in devices["web-01"]["snmp"] and "write" not in devices["printer-2f"]["snmp"]


def test_the_demo_catalog_is_the_examples_network_actions() -> None:
    example = {a["id"]: a for a in yaml.safe_load(EXAMPLE_ACTIONS.read_text())["actions"]}
    demo_catalog = yaml.safe_load(DEMO_ACTIONS.read_text())["actions"]
    assert [a["id"] for a in demo_catalog] == ["port-bounce", "port-disable", "port-enable", "set-location"]
    for action in demo_catalog:
        assert action == example[action["id"]]
    assert demo_settings(Settings(data_dir=Path("/nonexistent"))).actions_file == DEMO_ACTIONS
    own = Settings(data_dir=Path("/nonexistent"), actions_file=EXAMPLE_ACTIONS)
    assert demo_settings(own).actions_file == EXAMPLE_ACTIONS


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


class RunningDemo:
    """A `pocketnoc demo` subprocess on free ports; its banner lines and the admin password it printed."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port, self.sim_port = data_dir, free_port(), _free_udp_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
        self.process = subprocess.Popen(
            [str(POCKETNOC), "demo", "--data-dir", str(data_dir), "--port", str(self.port),
             "--sim-port", str(self.sim_port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("INFO:     Uvicorn running"):
                break
        assert self.process.poll() is None, "\n".join(self.lines)
        self.password = next(x.split()[1] for x in self.lines if x.startswith("password:"))
        self.url = f"http://127.0.0.1:{self.port}"
        self._drain = threading.Thread(target=self.process.stdout.read, daemon=True)
        self._drain.start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


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
        # scheduled turn may be up to an interval (30 s) away: ask for it now, as "Poll now" does (a 404 means the
        # turn is already running, which serves as well).
        polled = httpx.post(f"{demo_run.url}/api/v1/devices/{switch_id}/poll", headers=bearer(api_token), timeout=60)
        assert polled.status_code in (200, 404), polled.text
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
