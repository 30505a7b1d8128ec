"""Simulated servers: net-snmp Linux hosts (HOST-RESOURCES + UCD) and Windows hosts (HOST-RESOURCES)."""

from __future__ import annotations

import math
import random

from server.demo.snmprec import COUNTER32, DOWN, GAUGE32, INTEGER, OCTETS, TICKS, IfType, Port, Recording, interfaces, rng, system

HR = "1.3.6.1.2.1.25"
HR_STORAGE = f"{HR}.2.3.1"
HR_DEVICE = f"{HR}.3.2.1"
HR_PROCESSOR = f"{HR}.3.3.1"
UCD = "1.3.6.1.4.1.2021"
_RAM, _VIRTUAL, _OTHER, _FIXED = f"{HR}.2.1.2", f"{HR}.2.1.3", f"{HR}.2.1.1", f"{HR}.2.1.4"
_PROCESSOR_TYPE = f"{HR}.3.1.3"
_KIB = 1024
_GIB_KIB = 1024 * 1024

# (mount point, size in GiB, fraction used)
Disk = tuple[str, float, float]


def _hr_system(rec: Recording, seed: random.Random, uptime: int, users: float, processes: float) -> None:
    """hrSystem: uptime (ticks, growing), logged-in users and process count (waving)."""
    rec.counter(f"{HR}.1.1.0", TICKS, 100, uptime + seed.randrange(100, 9000))
    rec.wave(f"{HR}.1.5.0", GAUGE32, users, max(users / 2, 0.6), period=1800, phase=seed.uniform(0, 6))
    rec.wave(f"{HR}.1.6.0", GAUGE32, processes, processes / 20, period=420, phase=seed.uniform(0, 6))
    rec.number(f"{HR}.1.7.0", INTEGER, 0)


def _storage(rec: Recording, index: int, kind: str, descr: str, unit: int, size: int, used: int,
             swing: float = 0.0, phase: float = 0.0) -> None:
    """One hrStorageEntry; size and used are in allocation units, used waves by `swing` units."""
    rec.number(f"{HR_STORAGE}.1.{index}", INTEGER, index)
    rec.oid(f"{HR_STORAGE}.2.{index}", kind)
    rec.text(f"{HR_STORAGE}.3.{index}", descr)
    rec.number(f"{HR_STORAGE}.4.{index}", INTEGER, unit)
    rec.number(f"{HR_STORAGE}.5.{index}", INTEGER, size)
    if swing:
        rec.wave(f"{HR_STORAGE}.6.{index}", INTEGER, used, swing, period=1500, phase=phase, high=size)
    else:
        rec.number(f"{HR_STORAGE}.6.{index}", INTEGER, used)
    rec.number(f"{HR_STORAGE}.7.{index}", COUNTER32, 0)


def _processors(rec: Recording, seed: random.Random, first: int, cores: int, cpu: str, load: float) -> None:
    """hrDeviceTable processor rows and hrProcessorLoad per core (percent, waving around load)."""
    for index in range(first, first + cores):
        rec.number(f"{HR_DEVICE}.1.{index}", INTEGER, index)
        rec.oid(f"{HR_DEVICE}.2.{index}", _PROCESSOR_TYPE)
        rec.text(f"{HR_DEVICE}.3.{index}", cpu)
        rec.oid(f"{HR_DEVICE}.4.{index}", "0.0")
        rec.number(f"{HR_DEVICE}.5.{index}", INTEGER, 2)
        rec.number(f"{HR_DEVICE}.6.{index}", COUNTER32, 0)
        rec.oid(f"{HR_PROCESSOR}.1.{index}", "0.0")
        base = min(100.0, max(0.0, load * 100 + seed.uniform(-8, 8)))
        rec.wave(f"{HR_PROCESSOR}.2.{index}", INTEGER, base, min(base, 100 - base, 15) + 2,
                 period=seed.uniform(120, 400), phase=seed.uniform(0, 6), high=100)


def _ucd(rec: Recording, seed: random.Random, cores: int, load: float, ram_kib: int, used_kib: int,
         swap_kib: int, disks: list[tuple[str, int, int]]) -> None:
    """UCD-SNMP-MIB memory, load averages, CPU raw counters and dskTable, as net-snmp's defaults give."""
    mem = f"{UCD}.4"
    rec.number(f"{mem}.1.0", INTEGER, 0)
    rec.text(f"{mem}.2.0", "swap")
    rec.number(f"{mem}.3.0", INTEGER, swap_kib)
    rec.number(f"{mem}.4.0", INTEGER, swap_kib * 9 // 10)
    rec.number(f"{mem}.5.0", INTEGER, ram_kib)
    rec.wave(f"{mem}.6.0", INTEGER, ram_kib - used_kib, ram_kib / 50, period=1500, phase=math.pi)
    rec.number(f"{mem}.11.0", INTEGER, ram_kib - used_kib + swap_kib * 9 // 10)
    rec.number(f"{mem}.12.0", INTEGER, 16000)
    rec.number(f"{mem}.13.0", INTEGER, ram_kib // 60)
    rec.number(f"{mem}.14.0", INTEGER, ram_kib // 40)
    rec.number(f"{mem}.15.0", INTEGER, (ram_kib - used_kib) // 2)
    rec.number(f"{mem}.100.0", INTEGER, 0)
    rec.text(f"{mem}.101.0", "")
    la = f"{UCD}.10.1"
    for i, (label, period) in enumerate((("Load-1", 60.0), ("Load-5", 300.0), ("Load-15", 900.0)), start=1):
        average, swing, phase = cores * load, cores * load * 0.15 / i, seed.uniform(0, 6)
        rec.number(f"{la}.1.{i}", INTEGER, i)
        rec.text(f"{la}.2.{i}", label)
        rec.wave(f"{la}.3.{i}", OCTETS, average, swing, period=period, phase=phase)
        rec.text(f"{la}.4.{i}", "12.00" if i == 1 else "14.00")
        rec.wave(f"{la}.5.{i}", INTEGER, average * 100, swing * 100, period=period, phase=phase)
        rec.number(f"{la}.100.{i}", INTEGER, 0)
        rec.text(f"{la}.101.{i}", "")
    stats = f"{UCD}.11"
    busy = min(load, 0.98)
    rec.wave(f"{stats}.9.0", INTEGER, busy * 80, 5, period=300, high=100)
    rec.wave(f"{stats}.10.0", INTEGER, busy * 20, 2, period=300, high=100)
    rec.wave(f"{stats}.11.0", INTEGER, (1 - busy) * 100, 5, period=300, phase=math.pi, high=100)
    age = seed.uniform(5, 90) * 86_400
    ticks = cores * 100.0
    for column, share in ((50, busy * 0.78), (51, 0.01), (52, busy * 0.2), (53, 1 - busy), (54, 0.01)):
        rec.counter(f"{stats}.{column}.0", COUNTER32, ticks * share, ticks * share * age)
    dsk = f"{UCD}.9.1"
    for i, (path, total, used) in enumerate(disks, start=1):
        percent = round(100 * used / total)
        rec.number(f"{dsk}.1.{i}", INTEGER, i)
        rec.text(f"{dsk}.2.{i}", path)
        rec.text(f"{dsk}.3.{i}", f"/dev/mapper/vg0-{path.strip('/') or 'root'}")
        rec.number(f"{dsk}.4.{i}", INTEGER, -1)
        rec.number(f"{dsk}.5.{i}", INTEGER, 10)
        rec.number(f"{dsk}.6.{i}", INTEGER, total)
        rec.number(f"{dsk}.7.{i}", INTEGER, total - used)
        rec.number(f"{dsk}.8.{i}", INTEGER, used)
        rec.number(f"{dsk}.9.{i}", INTEGER, percent)
        rec.number(f"{dsk}.100.{i}", INTEGER, 1 if percent > 90 else 0)
        rec.text(f"{dsk}.101.{i}", f"{path}: less than 10% free (= {100 - percent}%)" if percent > 90 else "")


def linux_host(rec: Recording, name: str, *, location: str, cores: int, ram_gb: int, load: float,
               disks: list[Disk], nic_rate: float, docker: bool = False) -> None:
    """A Debian server answering through net-snmp: system, IF-MIB, HOST-RESOURCES and UCD-SNMP."""
    seed = rng(name)
    uptime = system(
        rec, name=name, object_id="1.3.6.1.4.1.8072.3.2.10", services=72, location=location,
        uptime_days=seed.uniform(3, 120), contact="Ops <ops@example.net>",
        descr=f"Linux {name} 6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01) x86_64",
    )
    ports = [
        Port(1, "lo", "lo", 10, kind=IfType.LOOPBACK, mtu=65536, rate_in=2e4, rate_out=2e4),
        Port(2, "ens18", "ens18", 1000, rate_in=nic_rate, rate_out=nic_rate * seed.uniform(0.5, 4)),
    ]
    if docker:
        ports.append(Port(3, "docker0", "docker0", 0, oper=DOWN))
    interfaces(rec, name, ports, uptime)
    _hr_system(rec, seed, uptime, users=1, processes=140 + 40 * cores * load)
    ram_kib, swap_kib = ram_gb * _GIB_KIB, 2 * _GIB_KIB
    rec.number(f"{HR}.2.2.0", INTEGER, ram_kib)
    used_kib = int(ram_kib * min(0.92, 0.35 + load / 2))
    _storage(rec, 1, _RAM, "Physical memory", _KIB, ram_kib, used_kib, ram_kib / 50, math.pi)
    _storage(rec, 3, _VIRTUAL, "Virtual memory", _KIB, ram_kib + swap_kib, used_kib + swap_kib // 10)
    _storage(rec, 6, _OTHER, "Memory buffers", _KIB, ram_kib, ram_kib // 40)
    _storage(rec, 7, _OTHER, "Cached memory", _KIB, (ram_kib - used_kib) // 2, (ram_kib - used_kib) // 2)
    _storage(rec, 8, _OTHER, "Shared memory", _KIB, ram_kib // 60, ram_kib // 60)
    _storage(rec, 10, _VIRTUAL, "Swap space", _KIB, swap_kib, swap_kib // 10)
    in_kib: list[tuple[str, int, int]] = []
    for offset, (mount, size_gb, used) in enumerate(disks):
        blocks = int(size_gb * _GIB_KIB / 4)
        _storage(rec, 31 + offset, _FIXED, mount, 4096, blocks, int(blocks * used))
        in_kib.append((mount, int(size_gb * _GIB_KIB), int(size_gb * _GIB_KIB * used)))
    _processors(rec, seed, 196608, cores, "GenuineIntel: Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz", load)
    _ucd(rec, seed, cores, load, ram_kib, used_kib, swap_kib, in_kib)


def windows_host(rec: Recording, name: str, *, location: str, object_id: str, cores: int, ram_gb: int,
                 load: float, disks: list[Disk], nic_rate: float) -> None:
    """A Windows Server answering through its SNMP service: system, IF-MIB and HOST-RESOURCES."""
    seed = rng(name)
    uptime = system(
        rec, name=name, object_id=object_id, services=76, location=location, uptime_days=seed.uniform(2, 35),
        contact="", descr="Hardware: Intel64 Family 6 Model 85 Stepping 7 AT/AT COMPATIBLE - Software: "
                          "Windows Version 6.3 (Build 17763 Multiprocessor Free)",
    )
    # Windows pads ifDescr with a trailing NUL, which collectors must strip.
    ports = [
        Port(1, "loopback_0", "Software Loopback Interface 1\x00", 1073, kind=IfType.LOOPBACK, mtu=1500),
        Port(2, "ethernet_32768", "Microsoft Kernel Debug Network Adapter\x00", 0, oper=DOWN),
        Port(3, "ethernet_32769", "Intel(R) 82574L Gigabit Network Connection\x00", 1000,
             rate_in=nic_rate, rate_out=nic_rate * seed.uniform(1, 5)),
        Port(4, "tunnel_32512", "Microsoft ISATAP Adapter\x00", 0, kind=IfType.TUNNEL, admin=DOWN, oper=DOWN,
             mtu=1280),
        Port(5, "ppp_32768", "WAN Miniport (IP)\x00", 0, kind=23, oper=DOWN),
    ]
    interfaces(rec, name, ports, uptime)
    _hr_system(rec, seed, uptime, users=2, processes=95 + 20 * cores * load)
    ram_kib = ram_gb * _GIB_KIB
    rec.number(f"{HR}.2.2.0", INTEGER, ram_kib)
    letters = "CDEFGH"
    for i, (label, size_gb, used) in enumerate(disks):
        units = int(size_gb * _GIB_KIB / 4)
        serial = seed.randrange(1 << 32)
        _storage(rec, i + 1, _FIXED, f"{letters[i]}:\\ Label:{label}  Serial Number {serial:x}", 4096, units,
                 int(units * used))
    units64 = ram_kib // 64
    used64 = int(units64 * (0.45 + load / 3))
    n = len(disks)
    _storage(rec, n + 1, _VIRTUAL, "Virtual Memory", 65536, units64 * 5 // 4, used64 + units64 // 10)
    _storage(rec, n + 2, _RAM, "Physical Memory", 65536, units64, used64, units64 / 40, seed.uniform(0, 6))
    _processors(rec, seed, 4, cores, "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", load)
