"""The demo's simulated devices, checked through a real snmpsim with net-snmp's command-line tools."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from server.config.settings import Settings
from server.demo import simvar
from server.demo.fleet import BUSY_PORT, FLAP_PORT, UNREACHABLE
from server.demo.inventory import ACTIONS as DEMO_ACTIONS
from server.demo.inventory import demo_devices, demo_settings, prepare_demo, run_demo_agents
from server.demo.recordings import write_recordings
from server.demo.sim import SimError, SimHandle, start_snmpsim
from tests.server.demo_helpers import (
    IF_ADMIN,
    IF_OPER,
    IF_TABLE,
    SYS_LOCATION,
    free_udp_port,
    snmp_get,
    snmp_run,
    snmp_set,
    snmp_walk,
)

BASE = "127.0.78."  # not the demo's 127.0.77.x, so a running demo cannot collide
FLAP_SECONDS = 4.0
IFX_TABLE = "1.3.6.1.2.1.31.1.1.1"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
EXAMPLE_ACTIONS = Path(__file__).resolve().parents[2] / "config" / "actions.example.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    """A running demo on 127.0.78.x: device name -> inventory entry."""
    data_dir = tmp_path_factory.mktemp("demo")
    port = free_udp_port()
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
    result = snmp_run("snmpget", demo[UNREACHABLE.name], SYS_NAME, timeout=1)
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
    endpoint = [(f"{BASE}200", free_udp_port())]
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
        start_snmpsim(tmp_path, [(f"{BASE}201", free_udp_port())], tmp_path / "sim.log")


# ---------------------------------------------------------------- writable objects and the demo's actions


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
