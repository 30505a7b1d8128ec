"""Profiles and kind detection: the detection table row by row, then whole devices simulated by snmpsim."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from agents.base import Reading, SnmpCredentials, Target
from agents.profiles import (
    KIND_PROFILES,
    KIND_RULES,
    KINDS,
    PROFILES,
    DeviceFacts,
    choose_profiles,
    detect_kind,
    resolve_override,
)
from agents.snmp import SnmpCollector
from agents.snmp_values import parse_oid
from tests.peers.snmpsim import SnmpsimPeer

pytestmark = pytest.mark.timeout(120)

# One row per detection rule (and the near misses next to it): facts -> expected kind.
DETECTION_TABLE = [
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.311.1.1.3.1.2"), "windows"),
    (DeviceFacts(sys_descr="Hardware: Intel64 - Software: Windows Version 6.3"), "windows"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.311.1.1.3.1.2", answered=frozenset({"hr_printer"})), "windows"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.99.1", answered=frozenset({"ups"})), "ups"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.318.1.3.27"), "ups"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.11.2.3.9.1", answered=frozenset({"printer", "host"})), "printer"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.8072.3.2.10", answered=frozenset({"printer"})), "printer"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.8072.3.2.10"), "linux"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.8072.3.2.10", answered=frozenset({"hr_printer"})), "linux"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.8072.3.2.100"), "generic"),  # not a prefix match on ".10"
    (DeviceFacts(sys_descr="Linux fw1 5.10.0 #1 SMP x86_64", ip_forwarding=1), "linux"),
    (DeviceFacts(sys_descr="Embedded device", answered=frozenset({"hr_printer"})), "printer"),
    # MikroTik RB4011 (branch-rtr1 of the demo): services 78, a LAN bridge of 9 ports, still a router
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.14988.1", sys_descr="RouterOS RB4011iGS+", sys_services=78, if_number=14,
                 bridge_ports=9, ip_forwarding=1), "router"),
    (DeviceFacts(sys_descr="RouterOS CHR", bridge_ports=8), "router"),  # sysObjectID not readable
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.14988.1", sys_descr="RouterOS CRS326-24G-2S+", bridge_ports=26), "switch"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.9.1.1208", bridge_ports=48), "switch"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.9.1.1208", sys_services=2, if_number=26), "switch"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.9.1.1208", sys_services=2, if_number=4), "generic"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.9.1.1", ip_forwarding=1), "router"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.9.1.1", sys_services=78, if_number=4), "router"),
    (DeviceFacts(sys_object_id="1.3.6.1.4.1.2636.1.1.1.2.1", ip_forwarding=2, sys_services=72), "generic"),
    (DeviceFacts(), "generic"),
]


@pytest.mark.parametrize(("facts", "kind"), DETECTION_TABLE)
def test_detection_table(facts: DeviceFacts, kind: str) -> None:
    assert detect_kind(facts) == kind


def test_every_rule_is_exercised_and_names_a_known_kind() -> None:
    assert all(rule.kind in KINDS for rule in KIND_RULES)
    for rule in KIND_RULES:  # each rule decides at least one row of the table
        decided = [f for f, k in DETECTION_TABLE if k == rule.kind and detect_kind(f, (rule,)) == rule.kind]
        assert decided, rule


def test_profiles_are_numeric_oids_with_unique_fields() -> None:
    seen: set[str] = set()
    for profile in PROFILES.values():
        fields = [*profile.scalars, *profile.columns]
        assert not seen & set(fields), profile.name
        seen |= set(fields)
        for oid in (*profile.scalars.values(), *profile.columns.values(), *profile.probes):
            assert parse_oid(oid)[:4] == (1, 3, 6, 1)
        assert profile.binary <= set(profile.columns)
    assert set(KIND_PROFILES) == set(KINDS)


def test_choose_and_override() -> None:
    assert choose_profiles(frozenset({"ucd", "if", "hr_printer"})) == ("system", "if", "ucd")
    assert resolve_override("linux") == ("linux", ("system", "if", "host", "ucd"))
    assert resolve_override("host, if") == (None, ("system", "if", "host"))
    with pytest.raises(ValueError, match="unknown SNMP profile"):
        resolve_override("if,fridge")


@pytest.fixture
async def collector() -> AsyncIterator[SnmpCollector]:
    c = SnmpCollector()
    yield c
    await c.close()


async def poll(collector: SnmpCollector, sim: SnmpsimPeer, community: str, version: str = "2c") -> Reading:
    target = Target(sim.address, sim.port, snmp=SnmpCredentials(version, community), timeout=3, retries=1)
    await collector.collect(target)
    return await collector.collect(target)  # the second poll runs the cached, tuned plan


def samples(reading: Reading, metric: str) -> dict[str, float]:
    return {",".join(f"{k}={v}" for k, v in sorted(s.labels.items())): s.value for s in reading.samples if s.metric == metric}


async def test_linux_recording(snmpsim_devices: SnmpsimPeer, collector: SnmpCollector) -> None:
    r = await poll(collector, snmpsim_devices, "linux-full-walk")
    assert r.facts["kind"] == "linux"  # it has an hrPrinterStatus row, but is a Linux host
    assert r.facts["profiles"] == ["system", "if", "host", "ucd"]
    assert r.facts["sys_name"] == "tt" and r.facts["uptime_seconds"] == 2334251.2
    assert samples(r, "load1") == {"": 0.46} and samples(r, "load15") == {"": 0.03}
    assert samples(r, "cpu_load_pct") == {"": 11.0}  # mean of hrProcessorLoad 13 and 9
    # UCD: total 1021976 kB, avail 63676 + buffers 23936 + cached 207212 kB are free.
    assert samples(r, "mem_total_bytes") == {"": 1021976 * 1024}
    assert samples(r, "mem_used_bytes") == {"": (1021976 - 63676 - 23936 - 207212) * 1024}
    assert samples(r, "swap_used_pct") == {"": round((987988 - 960556) / 987988 * 100, 1)}
    disks = {row["descr"]: row for row in r.tables["storage"] if row["type"] == "fixed"}
    assert set(disks) == {"/", "/usr/local", "/export"}
    assert disks["/"]["used_pct"] == 77.1 and samples(r, "storage_used_pct")["storage=/"] == 77.1
    eth0 = next(row for row in r.tables["interfaces"] if row["name"] == "eth0")
    assert eth0["mac"] == "00:12:79:62:f9:40" and eth0["speed_bps"] == 100_000_000 and eth0["oper"] == "up"
    assert samples(r, "if_in_octets")["ifIndex=2,ifName=eth0"] > 2**32


async def test_windows_recording(snmpsim_devices: SnmpsimPeer, collector: SnmpCollector) -> None:
    r = await poll(collector, snmpsim_devices, "winxp-full-walk")
    assert r.facts["kind"] == "windows" and r.facts["profiles"] == ["system", "if", "host"]
    assert {s.kind for s in r.samples if s.metric.endswith("_octets")} == {"counter32"}  # no ifXTable
    assert samples(r, "mem_total_bytes") == {"": 15852 * 65536}
    assert samples(r, "mem_used_bytes") == {"": 9686 * 65536}
    assert samples(r, "swap_used_pct") == {"": 39.1}  # "Virtual Memory" row when there is no UCD
    fixed = [row["descr"] for row in r.tables["storage"] if row["type"] == "fixed"]
    assert fixed == ["C:\\ Label:  Serial Number 1848504c", "Z:\\ Label:  Serial Number ba85e1bf"]
    assert {row["type"] for row in r.tables["storage"]} == {"fixed", "removable", "virtual", "ram"}


async def test_switch_48_ports(snmpsim_devices: SnmpsimPeer, collector: SnmpCollector) -> None:
    r = await poll(collector, snmpsim_devices, "switch48")
    assert r.facts["kind"] == "switch" and r.facts["profiles"] == ["system", "if", "cisco-ios"]  # its family adds Cisco MIBs
    assert r.facts["family"] == "cisco-ios"
    rows = r.tables["interfaces"]
    assert [row["index"] for row in rows] == list(range(1, 49))
    assert rows[0] == {
        "index": 1,
        "name": "Gi0/1",
        "descr": "GigabitEthernet0/1",
        "alias": "uplink 1",
        "type": 6,
        "mtu": 1500,
        "speed_bps": 1_000_000_000,
        "mac": "00:00:5e:00:53:01",
        "admin": "up",
        "oper": "up",
        "last_change_s": 1.0,
    }
    assert sum(row["oper"] == "down" for row in rows) == 10
    octets = samples(r, "if_in_octets")
    assert octets["ifIndex=48,ifName=Gi0/48"] == 5_000_000_048
    assert {s.kind for s in r.samples if s.metric == "if_in_octets"} == {"counter64"}
    assert sum(samples(r, "if_oper_up").values()) == 38
    assert sum(samples(r, "if_admin_up").values()) == 48  # down ports are admin up: alert-worthy
    assert "storage" not in r.tables and "cpu_load_pct" not in {s.metric for s in r.samples}


async def test_switch_over_v1_falls_back_to_32_bit_counters(snmpsim_devices: SnmpsimPeer, collector: SnmpCollector) -> None:
    r = await poll(collector, snmpsim_devices, "switch48", version="1")
    assert r.facts["kind"] == "switch"
    assert {s.kind for s in r.samples if s.metric == "if_out_octets"} == {"counter32"}
    assert samples(r, "if_in_octets")["ifIndex=1,ifName=Gi0/1"] == 5_000_000_001 % 2**32


@pytest.mark.parametrize(("community", "status", "on_battery", "charge"), [("ups", 2, 0, 100), ("ups-onbattery", 3, 1, 87)])
async def test_ups(
    snmpsim_devices: SnmpsimPeer,
    collector: SnmpCollector,
    community: str,
    status: int,
    on_battery: int,
    charge: int,
) -> None:
    r = await poll(collector, snmpsim_devices, community)
    assert r.facts["kind"] == "ups" and r.facts["profiles"] == ["system", "if", "ups"]
    assert samples(r, "ups_battery_status") == {"": status}
    assert samples(r, "ups_on_battery") == {"": on_battery}
    assert samples(r, "ups_charge_pct") == {"": charge}
    assert samples(r, "ups_runtime_minutes") == {"": 42} and samples(r, "ups_load_pct") == {"": 35}


async def test_printer(snmpsim_devices: SnmpsimPeer, collector: SnmpCollector) -> None:
    r = await poll(collector, snmpsim_devices, "printer")
    assert r.facts["kind"] == "printer" and r.facts["profiles"] == ["system", "if", "printer"]
    assert r.facts["printer_status"] == "idle"
    assert r.tables["supplies"] == [
        {
            "index": "1.1",
            "descr": "Black Toner Cartridge",
            "type": "tonerCartridge",
            "level": 2500,
            "max": 10000,
            "pct": 25.0,
        },
        {
            "index": "1.2",
            "descr": "Cyan Toner Cartridge",
            "type": "tonerCartridge",
            "level": -3,
            "max": 8000,
            "pct": None,
        },
        {
            "index": "1.3",
            "descr": "Waste Toner Box",
            "type": "wasteToner",
            "level": -2,
            "max": 100,
            "pct": None,
        },
        {"index": "1.4", "descr": "Fuser Kit", "type": "fuser", "level": 149000, "max": 150000, "pct": 99.3},
    ]
    assert samples(r, "printer_supply_pct") == {
        "supply=Black Toner Cartridge": 25.0,
        "supply=Fuser Kit": 99.3,
    }


async def test_kind_override_on_a_recording(snmpsim_devices: SnmpsimPeer, collector: SnmpCollector) -> None:
    target = Target(snmpsim_devices.address, snmpsim_devices.port, snmp=SnmpCredentials("2c", "winxp-full-walk"))
    r = await collector.collect(target, profile="generic")
    assert r.facts["kind"] == "generic" and r.facts["profiles"] == ["system", "if"]
    r = await collector.collect(target)  # no override: detection runs again
    assert r.facts["kind"] == "windows"
