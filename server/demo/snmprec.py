"""Build snmpsim `.snmprec` recordings: typed values, values that vary, and the shared MIB-II groups."""

from __future__ import annotations

import random
import string
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

# The variation module name: sim.py installs simvar.py under this name for snmpsim to load.
VARIATION = "demo"

# snmprec type tags: ASN.1 tag class + tag number of each SNMP type, as snmpsim spells them.
INTEGER, OCTETS, OID, IPADDR = "2", "4", "6", "64"
COUNTER32, GAUGE32, TICKS, COUNTER64 = "65", "66", "67", "70"
_PLAIN = frozenset(string.ascii_letters + string.digits + string.punctuation + " ")
_DAY_TICKS = 86_400 * 100

SYSTEM = "1.3.6.1.2.1.1"
IF_NUMBER = "1.3.6.1.2.1.2.1.0"
IF_TABLE = "1.3.6.1.2.1.2.2.1"
IFX_TABLE = "1.3.6.1.2.1.31.1.1.1"


class IfType(IntEnum):
    """The ifType values the demo devices use (IANAifType-MIB)."""

    ETHERNET = 6
    LOOPBACK = 24
    PROP_VIRTUAL = 53
    TUNNEL = 131
    L2VLAN = 135
    LAG = 161


UP, DOWN = 1, 2


def rng(name: str) -> random.Random:
    """A generator seeded by a device name, so every rewrite of the demo data is identical."""
    return random.Random(name)  # noqa: S311  -- made-up demo numbers, not secrets


class Recording:
    """The records of one simulated device, written sorted by OID as snmpsim requires."""

    def __init__(self) -> None:
        self._rows: dict[tuple[int, ...], tuple[str, str]] = {}

    def add(self, oid: str, tag: str, value: str) -> None:
        """Add (or replace) one raw record."""
        if "\n" in value or "\r" in value:
            raise ValueError(f"record value for {oid} spans lines")
        self._rows[tuple(int(part) for part in oid.split("."))] = (tag, value)

    def text(self, oid: str, value: str) -> None:
        """An OCTET STRING; anything but plain printable ASCII is written as hex."""
        if value and set(value) <= _PLAIN and value == value.strip():
            self.add(oid, OCTETS, value)
        else:
            self.octets(oid, value.encode())

    def octets(self, oid: str, value: bytes) -> None:
        """An OCTET STRING given as bytes."""
        self.add(oid, OCTETS + "x", value.hex())

    def number(self, oid: str, tag: str, value: int) -> None:
        """An INTEGER, Counter, Gauge or TimeTicks that stays put."""
        self.add(oid, tag, str(int(value)))

    def oid(self, oid: str, value: str) -> None:
        """An OBJECT IDENTIFIER value."""
        self.add(oid, OID, value)

    def ipaddr(self, oid: str, value: str) -> None:
        """An IpAddress value."""
        self.add(oid, IPADDR, value)

    def counter(self, oid: str, tag: str, rate: float, initial: float, *, amp: float = 0.0,
                period: float = 600.0, phase: float = 0.0) -> None:
        """A counter growing at `rate` per second (swinging by `amp`); Counter32/TimeTicks wrap at 2^32."""
        bits = 64 if tag == COUNTER64 else 32
        self._vary(oid, tag, f"kind=counter,rate={rate:.6g},initial={int(initial)},amp={amp:.3g},"
                             f"period={period:.6g},phase={phase:.4g},bits={bits}")

    def wave(self, oid: str, tag: str, base: float, amp: float, *, period: float = 600.0,
             phase: float = 0.0, low: float = 0.0, high: float = 2**31 - 1, decimals: int = 2) -> None:
        """A gauge moving between base-amp and base+amp (a string with `decimals` if tag is OCTETS)."""
        self._vary(oid, tag, f"kind=wave,base={base:.8g},amp={amp:.6g},period={period:.6g},"
                             f"phase={phase:.4g},min={low:.8g},max={high:.8g},decimals={decimals}")

    def writable(self, oid: str, tag: str, initial: str | int, choices: tuple[int, ...] = ()) -> None:
        """A value a SET changes (snmpsim keeps it in memory until it stops); `choices` limits integers."""
        extra = f",choices={':'.join(map(str, choices))}" if choices else ""
        self._vary(oid, tag, f"kind=store,init={str(initial).encode().hex()}{extra}")

    def _vary(self, oid: str, tag: str, params: str) -> None:
        self.add(oid, f"{tag}:{VARIATION}", params)

    def lines(self) -> list[str]:
        """The records as snmprec lines, in OID order."""
        return [
            f"{'.'.join(map(str, key))}|{tag}|{value}" for key, (tag, value) in sorted(self._rows.items())
        ]

    def write(self, path: Path) -> None:
        """Write the recording atomically, so a running snmpsim never reads half a file."""
        partial = path.with_name(path.name + ".tmp")
        partial.write_text("\n".join(self.lines()) + "\n", encoding="ascii")
        partial.replace(path)

    def __len__(self) -> int:
        return len(self._rows)


def system(rec: Recording, *, name: str, descr: str, object_id: str, services: int, location: str,
           uptime_days: float, contact: str = "noc@example.net") -> int:
    """Write the SNMPv2-MIB system group; return sysUpTime at start in ticks (for ifLastChange)."""
    uptime = int(uptime_days * _DAY_TICKS)
    rec.text(f"{SYSTEM}.1.0", descr)
    rec.oid(f"{SYSTEM}.2.0", object_id)
    rec.counter(f"{SYSTEM}.3.0", TICKS, 100, uptime)
    rec.text(f"{SYSTEM}.4.0", contact)
    rec.text(f"{SYSTEM}.5.0", name)
    rec.writable(f"{SYSTEM}.6.0", OCTETS, location)  # the set-location action writes it
    rec.number(f"{SYSTEM}.7.0", INTEGER, services)
    rec.number(f"{SYSTEM}.8.0", TICKS, 0)
    return uptime


@dataclass(frozen=True)
class Port:
    """One interface of a simulated device; rates are bytes/s in and out, errors per second."""

    index: int
    name: str
    descr: str
    speed_mbps: int
    alias: str = ""
    kind: int = IfType.ETHERNET
    admin: int = UP
    oper: int = UP
    rate_in: float = 0.0
    rate_out: float = 0.0
    errors: float = 0.0
    flap_period: float = 0.0
    mtu: int = 1500


def _mac(seed: random.Random) -> bytes:
    return bytes([0x00, 0x1B, 0x54, seed.randrange(256), seed.randrange(256), seed.randrange(256)])


def interfaces(rec: Recording, device: str, ports: Iterable[Port], uptime: int) -> None:
    """Write IF-MIB ifNumber, ifTable and ifXTable for the ports (counters grow only on up ports)."""
    seed = rng(device + "/if")
    port_list = list(ports)
    rec.number(IF_NUMBER, INTEGER, len(port_list))
    for port in port_list:
        _port(rec, seed, port, uptime)


def _port(rec: Recording, seed: random.Random, port: Port, uptime: int) -> None:
    i, t, x = port.index, IF_TABLE, IFX_TABLE
    running = port.oper == UP and port.admin == UP and not port.flap_period
    rec.number(f"{t}.1.{i}", INTEGER, i)
    rec.text(f"{t}.2.{i}", port.descr)
    rec.number(f"{t}.3.{i}", INTEGER, port.kind)
    rec.number(f"{t}.4.{i}", INTEGER, port.mtu)
    rec.number(f"{t}.5.{i}", GAUGE32, min(port.speed_mbps * 1_000_000, 2**32 - 1))
    rec.octets(f"{t}.6.{i}", b"" if port.kind in (IfType.LOOPBACK, IfType.TUNNEL) else _mac(seed))
    rec.writable(f"{t}.7.{i}", INTEGER, port.admin, choices=(UP, DOWN, 3))  # the port-* actions write it
    if port.flap_period:
        flap = f"period={port.flap_period:.6g},uptime={uptime}"
        rec.add(f"{t}.8.{i}", f"{INTEGER}:{VARIATION}", "kind=flap," + flap)
        rec.add(f"{t}.9.{i}", f"{TICKS}:{VARIATION}", "kind=flapchange," + flap)
    else:
        rec.add(f"{t}.8.{i}", f"{INTEGER}:{VARIATION}", f"kind=oper,oper={port.oper},index={i}")
        rec.number(f"{t}.9.{i}", TICKS, seed.randrange(uptime // 2 + 1) if uptime else 0)
    # (ifTable counter column, its ifXTable 64-bit twin, bytes per second, bytes per counted unit).
    age = seed.uniform(5, 40) * 86_400
    swing = {"amp": seed.uniform(0.2, 0.7), "period": seed.uniform(240, 900), "phase": seed.uniform(0, 6.28)}
    flows = (
        (10, 6, port.rate_in, 1.0), (11, 7, port.rate_in, 700.0), (16, 10, port.rate_out, 1.0),
        (17, 11, port.rate_out, 900.0),
    )
    for column, hc_column, rate, size in flows:
        per_second = rate / size
        initial = per_second * age
        if running and per_second > 0:
            rec.counter(f"{t}.{column}.{i}", COUNTER32, per_second, initial, **swing)
            rec.counter(f"{x}.{hc_column}.{i}", COUNTER64, per_second, initial, **swing)
        else:
            rec.number(f"{t}.{column}.{i}", COUNTER32, int(initial) % 2**32)
            rec.number(f"{x}.{hc_column}.{i}", COUNTER64, int(initial))
    # Multicast/broadcast (ifXTable 2-5), discards (13, 19), errors (14, 20), unknown protos (15).
    small = (port.rate_in + port.rate_out) / 200_000.0
    for column, table, rate in ((2, x, small), (3, x, small / 4), (4, x, small), (5, x, small / 4),
                                (13, t, small / 50), (19, t, small / 20), (15, t, 0.0)):
        initial = rate * age
        if running and rate > 0:
            rec.counter(f"{table}.{column}.{i}", COUNTER32, rate, initial)
        else:
            rec.number(f"{table}.{column}.{i}", COUNTER32, int(initial) % 2**32)
    if running and port.errors > 0:
        rec.counter(f"{t}.14.{i}", COUNTER32, port.errors, port.errors * age, amp=0.8, period=300)
        rec.counter(f"{t}.20.{i}", COUNTER32, port.errors / 10, port.errors * age / 10)
    else:
        rec.number(f"{t}.14.{i}", COUNTER32, seed.choice((0, 0, 0, 2, 17)))
        rec.number(f"{t}.20.{i}", COUNTER32, 0)
    rec.number(f"{t}.21.{i}", GAUGE32, 0)
    rec.oid(f"{t}.22.{i}", "0.0")
    rec.text(f"{x}.1.{i}", port.name)
    rec.number(f"{x}.14.{i}", INTEGER, 1 if port.kind == IfType.ETHERNET else 2)
    rec.number(f"{x}.15.{i}", GAUGE32, port.speed_mbps)
    rec.number(f"{x}.16.{i}", INTEGER, 2)
    rec.number(f"{x}.17.{i}", INTEGER, 1 if port.kind == IfType.ETHERNET else 2)
    rec.text(f"{x}.18.{i}", port.alias)
    rec.number(f"{x}.19.{i}", TICKS, 0)
