"""ENTITY-SENSOR and CISCO-ENTITY-SENSOR rows become samples with their names, units and the device's thresholds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.base import SnmpCredentials, Target
from agents.snmp import SnmpCollector
from tests.peers.snmpsim import INTEGER, OCTETS, SnmpsimPeer, start_snmpsim, system_records, write_snmprec

pytestmark = pytest.mark.timeout(120)

NAME, STD, CISCO, LIMIT = (
    "1.3.6.1.2.1.47.1.1.1.1.7.",
    "1.3.6.1.2.1.99.1.1.1.",
    "1.3.6.1.4.1.9.9.91.1.1.1.1.",
    "1.3.6.1.4.1.9.9.91.1.2.1.1.",
)


def sensor(
    base: str, idx: int, kind: int, scale: int, precision: int, value: int, status: int = 1
) -> list[tuple[str, str, object]]:
    return [(f"{base}{col}.{idx}", INTEGER, v) for col, v in ((1, kind), (2, scale), (3, precision), (4, value), (5, status))]


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    root = tmp_path_factory.mktemp("sensors")
    std = system_records("Example switch", "1.3.6.1.4.1.99999.3", "sw-sensors", services=2)
    std += [
        (NAME + "5", OCTETS, "Inlet"),
        (NAME + "6", OCTETS, "Fan 1"),
        (NAME + "7", OCTETS, "PSU 12V"),
        (NAME + "8", OCTETS, "Gone"),
    ]
    std += sensor(STD, 5, 8, 9, 1, 235)  # 23.5 °C
    std += sensor(STD, 6, 10, 9, 0, 4800)  # 4800 rpm
    std += sensor(STD, 7, 4, 8, 0, 12100)  # 12100 mV = 12.1 V
    std += sensor(STD, 8, 8, 9, 0, 99, status=3)  # nonoperational: no sample
    write_snmprec(root / "data" / "std.snmprec", std)
    cisco = system_records("Cisco NX-OS(tm) Nexus9000", "1.3.6.1.4.1.9.12.3.1.3.2193", "nx1", services=70)
    cisco += [(NAME + "100", OCTETS, "module-1 CPU"), *sensor(CISCO, 100, 8, 9, 0, 85)]
    cisco += [
        (f"{LIMIT}{c}.100.{t}", INTEGER, v)
        for t, sev, val, hit in ((1, 10, 80, 1), (2, 20, 90, 2))
        for c, v in ((2, sev), (3, 4), (4, val), (5, hit))
    ]
    write_snmprec(root / "data" / "cisco.snmprec", cisco)
    peer = start_snmpsim(root / "data", workdir=root / "work")
    yield peer
    peer.stop()


async def poll(sim: SnmpsimPeer, community: str) -> dict[str, object]:
    collector = SnmpCollector()
    target = Target(sim.address, sim.port, snmp=SnmpCredentials("2c", community), timeout=2, retries=1)
    await collector.collect(target)
    reading = await collector.collect(target)
    await collector.close()
    return {
        "samples": {(s.metric, s.labels.get("sensor")): s.value for s in reading.samples if s.metric.startswith("sensor_")},
        "rows": reading.tables.get("sensors"),
        "profiles": reading.facts["profiles"],
    }


async def test_entity_sensor_values_are_scaled_and_named(sim: SnmpsimPeer) -> None:
    got = await poll(sim, "std")
    assert "sensors" in got["profiles"]  # type: ignore[operator]
    assert got["samples"] == {
        ("sensor_celsius", "Inlet"): 23.5,
        ("sensor_fan_rpm", "Fan 1"): 4800.0,
        ("sensor_volts", "PSU 12V"): 12.1,
    }


async def test_cisco_thresholds_come_with_the_device_verdict(sim: SnmpsimPeer) -> None:
    got = await poll(sim, "cisco")
    assert got["samples"] == {("sensor_celsius", "module-1 CPU"): 85.0, ("sensor_alarm", "module-1 CPU"): 1.0}
    (row,) = got["rows"]  # type: ignore[misc]
    assert row["thresholds"] == [
        {"relation": ">=", "severity": "minor", "value": 80.0},
        {"relation": ">=", "severity": "major", "value": 90.0},
    ]
