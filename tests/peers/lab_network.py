"""A small lab network for discovery tests, authored as snmpsim recordings on 127.0.77.x, plus a real snmpd.

    core-sw1 127.0.77.1  Cisco IOS, routes; LLDP: dist-sw1 on Gi1/0/1, db1 on Gi1/0/2; CDP: ap1 on Gi1/0/3
    dist-sw1 127.0.77.2  switch; LLDP: core-sw1 on its port 48 (uplink), a hostile name (escape, bell, 300
                         characters) on port 1, and a printer at 127.0.78.1 - outside the range, never probed
    ap1      127.0.77.3  a wireless access point, no LLDP
    db1      127.0.77.9  net-snmp snmpd answering SNMPv3 only (its community is not the one discovery tries)

Each simulated device is its own snmpsim process (community `public`) on its own address and the same port:
snmpsim 1.2.2's per-endpoint data selection does not pick the endpoint's file for v2c requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.peers.snmpd import SnmpdPeer, V3User, free_udp_port, write_config
from tests.peers.snmpsim import (
    HEX,
    INTEGER,
    OCTETS,
    Record,
    SnmpsimPeer,
    interface_records,
    start_snmpsim,
    system_records,
    write_snmprec,
)

LLDP_REM = "1.0.8802.1.1.2.1.4.1.1"
LLDP_MAN = "1.0.8802.1.1.2.1.4.2.1"
LLDP_LOC = "1.0.8802.1.1.2.1.3.7.1"
CDP = "1.3.6.1.4.1.9.9.23.1.2.1.1"
HOSTILE = "\x1b[31mEVIL\x07\u202e" + "A" * 300
V3 = V3User("mon", "SHA", "authpass123", "AES", "privpass123")
SNMPSIM_HOSTS = ("127.0.77.1", "127.0.77.2", "127.0.77.3")
DB_HOST = "127.0.77.9"
OUTSIDE = "127.0.78.1"  # a neighbour outside the lab range: discovery must never send it anything


def _hex(text: str) -> str:
    return text.encode("utf-8").hex()


def lldp_neighbour(port: int, index: int, name: str, port_id: str, address: str | None, mac: str) -> list[Record]:
    """One lldpRemTable row (timeMark 0) and, when given, its IPv4 management address."""
    row = f"0.{port}.{index}"
    recs: list[Record] = [
        (f"{LLDP_REM}.4.{row}", INTEGER, 4),
        (f"{LLDP_REM}.5.{row}", HEX, mac),
        (f"{LLDP_REM}.6.{row}", INTEGER, 5),
        (f"{LLDP_REM}.7.{row}", OCTETS, port_id),
        (f"{LLDP_REM}.8.{row}", OCTETS, f"to {port}"),
        (f"{LLDP_REM}.9.{row}", HEX, _hex(name)),
        (f"{LLDP_REM}.10.{row}", OCTETS, "lab device"),
    ]
    if address:
        recs.append((f"{LLDP_MAN}.3.{row}.1.4.{address}", INTEGER, 2))
    return recs


def local_ports(names: dict[int, str]) -> list[Record]:
    return [(f"{LLDP_LOC}.3.{n}", OCTETS, name) for n, name in names.items()]


def entity(model: str, serial: str) -> list[Record]:
    e = "1.3.6.1.2.1.47.1.1.1.1"
    return [(f"{e}.11.1", OCTETS, serial), (f"{e}.13.1", OCTETS, model)]


def core_sw1() -> list[Record]:
    return [
        *system_records("Cisco IOS Software, C9300 Software, Version 17.9.4", "1.3.6.1.4.1.9.1.2494", "core-sw1", services=6),
        *interface_records(8, prefix="GigabitEthernet1/0/"),
        ("1.3.6.1.2.1.4.1.0", INTEGER, 1),
        *entity("C9300-24T", "FOC1234X0AB"),
        *local_ports({1: "Gi1/0/1", 2: "Gi1/0/2", 3: "Gi1/0/3"}),
        *lldp_neighbour(1, 1, "dist-sw1.lab.test", "ge-0/0/47", "127.0.77.2", "02000000a002"),
        *lldp_neighbour(2, 1, "db1", "eth0", DB_HOST, "02000000a009"),
        (f"{CDP}.4.3.1", HEX, "7f004d03"),
        (f"{CDP}.6.3.1", OCTETS, "ap1.lab.test"),
        (f"{CDP}.7.3.1", OCTETS, "eth0"),
        (f"{CDP}.8.3.1", OCTETS, "AIR-AP2802I"),
    ]


def dist_sw1() -> list[Record]:
    return [
        *system_records("Juniper Networks, Inc. ex2300-48t Ethernet Switch, JUNOS 21.4R3", "1.3.6.1.4.1.2636.1.1.1.2.132",
                        "dist-sw1.lab.test", services=2),
        *interface_records(48, prefix="ge-0/0/"),
        ("1.3.6.1.2.1.17.1.2.0", INTEGER, 48),
        *entity("EX2300-48T", "JW0000000042"),
        *local_ports({1: "ge-0/0/0", 2: "ge-0/0/1", 48: "ge-0/0/47"}),
        *lldp_neighbour(48, 1, "core-sw1", "Gi1/0/1", "127.0.77.1", "02000000a001"),
        *lldp_neighbour(1, 2, HOSTILE, "\x1bport", None, "02000000dead"),
        *lldp_neighbour(2, 3, "printer1", "1", OUTSIDE, "02000000a0ff"),
        ("1.3.6.1.2.1.17.1.4.1.2.1", INTEGER, 1),
        ("1.3.6.1.2.1.17.4.3.1.2.2.0.0.0.160.255", INTEGER, 1),
    ]


def ap1() -> list[Record]:
    return [
        *system_records("Cisco AP Software, ap3g3-k9w8", "1.3.6.1.4.1.9.1.2147", "ap1.lab.test", services=2),
        *interface_records(2, prefix="eth"),
    ]


@dataclass
class LabNetwork:
    """The running lab: snmpsim on SNMPSIM_HOSTS and snmpd on DB_HOST, all on one UDP port."""


    port: int
    data_dir: Path

    ranges = ("127.0.77.0/28",)


def _start_sims(data: Path, port: int) -> list[SnmpsimPeer]:
    sims: list[SnmpsimPeer] = []
    try:
        for host, records in zip(SNMPSIM_HOSTS, (core_sw1(), dist_sw1(), ap1()), strict=True):
            write_snmprec(data / host / "public.snmprec", records)
            sims.append(start_snmpsim(data / host, [(host, port)]))
    except BaseException:
        for sim in sims:
            sim.stop()
        raise
    return sims


@contextmanager
def lab_network(tmp: Path) -> Iterator[LabNetwork]:
    """Start the lab (an snmpsim per simulated device, one snmpd) and stop it afterwards."""
    data = tmp / "lab"
    for attempt in range(3):
        port = free_udp_port()
        try:
            sims = _start_sims(data, port)
        except RuntimeError:
            if attempt == 2:
                raise
            continue
        break
    workdir = tmp / "snmpd"
    workdir.mkdir(parents=True, exist_ok=True)
    db = SnmpdPeer(workdir, port, address=DB_HOST, community="not-the-lab-community", users=(V3,))
    write_config(db, "db1", "lab", "noc@example.test")
    try:
        db.start()
        yield LabNetwork(port, data)
    finally:
        db.stop()
        for sim in sims:
            sim.stop()
