"""Run snmpsim (simulated SNMP devices from .snmprec files) on loopback, and write .snmprec data.

Reusable by tests, the demo and benchmarks:

    data = tmp_path / "data"
    write_snmprec(data / "switch48.snmprec", switch_records(ports=48))
    sim = start_snmpsim(data, [("127.0.0.1", free_udp_port())])
    ... community "switch48" at sim.address:sim.port ...
    sim.stop()

As root, snmpsim refuses to run unless told which user to become, and after dropping to `nobody`
it cannot read a venv under /root; SNMPSIM_ALLOW_ROOT=true (honoured by snmpsim 1.2.2's
PrivilegesOf) keeps it as the current user, so it works from any checkout path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import snmpsim

from tests.peers.snmpd import free_udp_port

SNMPGETNEXT = shutil.which("snmpgetnext") or "/usr/bin/snmpgetnext"
# The real device recordings shipped with snmpsim (linux-full-walk, winxp-full-walk, ...).
RECORDED = Path(snmpsim.__file__).parent / "data" / "recorded"

# snmprec type tags.
INTEGER, OCTETS, HEX, OID, IPADDR, COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = (
    "2",
    "4",
    "4x",
    "6",
    "64",
    "65",
    "66",
    "67",
    "70",
)
Record = tuple[str, str, object]


def _responder() -> list[str]:
    script = Path(sys.executable).parent / "snmpsim-command-responder"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from snmpsim.commands.responder import main; sys.exit(main())"]


@dataclass(slots=True)
class SnmpsimPeer:
    """A running snmpsim process; communities are the data files' relative paths without .snmprec."""

    proc: subprocess.Popen[bytes]
    data_dir: Path
    endpoints: list[tuple[str, int]]
    workdir: Path
    _own_workdir: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        """Address of the first endpoint."""
        return self.endpoints[0][0]

    @property
    def port(self) -> int:
        """Port of the first endpoint."""
        return self.endpoints[0][1]

    @property
    def log(self) -> Path:
        """Where snmpsim's stdout/stderr go."""
        return self.workdir / "snmpsim.log"

    def stop(self) -> None:
        """Stop the simulator (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def communities(data_dir: Path) -> list[str]:
    """The community names snmpsim serves for a data directory."""
    return sorted(str(p.relative_to(data_dir).with_suffix("")) for p in Path(data_dir).rglob("*.snmprec"))


def start_snmpsim(
    data_dir: Path,
    endpoints: Sequence[tuple[str, int] | str] | None = None,
    *,
    workdir: Path | None = None,
    max_var_binds: int | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 90.0,
) -> SnmpsimPeer:
    """Start snmpsim-command-responder serving data_dir on the endpoints; wait until it answers."""
    data_dir = Path(data_dir)
    names = communities(data_dir)
    if not names:
        raise ValueError(f"no .snmprec files under {data_dir}")
    eps = [_endpoint(e) for e in endpoints] if endpoints else [("127.0.0.1", free_udp_port())]
    own = workdir is None
    work = Path(tempfile.mkdtemp(prefix="snmpsim-")) if workdir is None else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    cmd = [*_responder(), f"--data-dir={data_dir}", f"--cache-dir={work / 'cache'}", "--log-level=error"]
    cmd += [f"--agent-udpv4-endpoint={host}:{port}" for host, port in eps]
    if max_var_binds:
        cmd.append(f"--max-var-binds={max_var_binds}")
    cmd += list(extra_args)
    env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
    with open(work / "snmpsim.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    peer = SnmpsimPeer(proc, data_dir, eps, work, own)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = peer.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"snmpsim exited with {proc.returncode}: {tail}")
        if all(_answers(host, port, names[0]) for host, port in eps):
            return peer
        time.sleep(0.2)
    peer.stop()
    raise RuntimeError(f"snmpsim did not answer on {eps} within {ready_timeout}s")


def _endpoint(value: tuple[str, int] | str) -> tuple[str, int]:
    if isinstance(value, str):
        host, _, port = value.rpartition(":")
        return host, int(port)
    return value


def _answers(host: str, port: int, community: str) -> bool:
    env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
    cmd = [SNMPGETNEXT, "-v2c", "-c", community, "-t", "0.5", "-r", "0", "-On", f"{host}:{port}", "1.3.6"]
    return subprocess.run(cmd, env=env, capture_output=True, timeout=15, check=False).returncode == 0


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(p) for p in oid.split("."))


def write_snmprec(path: Path, records: Iterable[Record]) -> Path:
    """Write (oid, tag, value) records sorted by OID, as snmpsim requires."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{oid}|{tag}|{value}" for oid, tag, value in sorted(records, key=lambda r: _oid_key(r[0]))]
    path.write_text("\n".join(lines) + "\n")
    return path


def system_records(
    descr: str,
    object_id: str,
    name: str,
    services: int = 72,
    uptime: int = 8_640_000,
    location: str = "lab",
    contact: str = "noc@example.test",
) -> list[Record]:
    """SNMPv2-MIB system group."""
    base = "1.3.6.1.2.1.1."
    return [
        (base + "1.0", OCTETS, descr),
        (base + "2.0", OID, object_id),
        (base + "3.0", TIMETICKS, uptime),
        (base + "4.0", OCTETS, contact),
        (base + "5.0", OCTETS, name),
        (base + "6.0", OCTETS, location),
        (base + "7.0", INTEGER, services),
    ]


def interface_records(
    ports: int,
    *,
    ifx: bool = True,
    down: Iterable[int] = (),
    in_octets: int = 5_000_000_000,
    speed_mbps: int = 1000,
    prefix: str = "GigabitEthernet0/",
) -> list[Record]:
    """IF-MIB ifTable (+ ifXTable with Counter64) for `ports` ethernet ports indexed 1..ports."""
    down = set(down)
    recs: list[Record] = [("1.3.6.1.2.1.2.1.0", INTEGER, ports)]
    t, x = "1.3.6.1.2.1.2.2.1.", "1.3.6.1.2.1.31.1.1.1."
    for i in range(1, ports + 1):
        oper = 2 if i in down else 1
        octets = in_octets + i
        recs += [
            (f"{t}1.{i}", INTEGER, i),
            (f"{t}2.{i}", OCTETS, f"{prefix}{i}"),
            (f"{t}3.{i}", INTEGER, 6),
            (f"{t}4.{i}", INTEGER, 1500),
            (f"{t}5.{i}", GAUGE32, min(speed_mbps * 1_000_000, 4_294_967_295)),
            (f"{t}6.{i}", HEX, f"00005e0053{i:02x}"),
            (f"{t}7.{i}", INTEGER, 1),
            (f"{t}8.{i}", INTEGER, oper),
            (f"{t}9.{i}", TIMETICKS, 100 * i),
            (f"{t}10.{i}", COUNTER32, octets % 2**32),
            (f"{t}13.{i}", COUNTER32, 0),
            (f"{t}14.{i}", COUNTER32, i % 3),
            (f"{t}16.{i}", COUNTER32, (octets * 2) % 2**32),
            (f"{t}19.{i}", COUNTER32, 0),
            (f"{t}20.{i}", COUNTER32, 0),
        ]
        if ifx:
            recs += [
                (f"{x}1.{i}", OCTETS, f"Gi0/{i}"),
                (f"{x}6.{i}", COUNTER64, octets),
                (f"{x}10.{i}", COUNTER64, octets * 2),
                (f"{x}15.{i}", GAUGE32, speed_mbps),
                (f"{x}18.{i}", OCTETS, f"uplink {i}" if i == 1 else ""),
            ]
    return recs


def switch_records(ports: int = 48) -> list[Record]:
    """A layer-2 access switch: Cisco-like sysObjectID, sysServices=2, BRIDGE-MIB port count."""
    return [
        *system_records(
            "Cisco IOS Software, C2960X Software, Version 15.2(7)E",
            "1.3.6.1.4.1.9.1.1208",
            "access-sw1",
            services=2,
        ),
        *interface_records(ports, down=range(2, ports + 1, 5)),
        ("1.3.6.1.2.1.17.1.2.0", INTEGER, ports),
    ]


def ups_records(on_battery: bool = False) -> list[Record]:
    """A UPS speaking UPS-MIB (RFC 1628) with one network interface."""
    u = "1.3.6.1.2.1.33.1."
    return [
        *system_records("Network Management Card for UPS", "1.3.6.1.4.1.99999.1", "ups1", services=72),
        *interface_records(1, ifx=False, prefix="eth"),
        (u + "1.1.0", OCTETS, "ExampleUPS"),
        (u + "1.2.0", OCTETS, "Smart 1500"),
        (u + "2.1.0", INTEGER, 3 if on_battery else 2),
        (u + "2.2.0", INTEGER, 120 if on_battery else 0),
        (u + "2.3.0", INTEGER, 42),
        (u + "2.4.0", INTEGER, 87 if on_battery else 100),
        (u + "4.1.0", INTEGER, 5 if on_battery else 3),
        (u + "4.2.0", INTEGER, 1),
        (u + "4.4.1.5.1", INTEGER, 35),
    ]


def printer_records() -> list[Record]:
    """A network printer: Printer-MIB supplies (with the -3 and -2 level sentinels) and hrPrinterStatus."""
    s = "1.3.6.1.2.1.43.11.1.1."
    supplies = [
        (1, 21, "Black Toner Cartridge", 10000, 2500),
        (2, 21, "Cyan Toner Cartridge", 8000, -3),
        (3, 4, "Waste Toner Box", 100, -2),
        (4, 15, "Fuser Kit", 150000, 149000),
    ]
    recs: list[Record] = [
        *system_records("HP ETHERNET MULTI-ENVIRONMENT", "1.3.6.1.4.1.11.2.3.9.1", "printer1", services=72),
        *interface_records(1, ifx=False, prefix="eth"),
        ("1.3.6.1.2.1.25.3.2.1.2.1", OID, "1.3.6.1.2.1.25.3.1.5"),
        ("1.3.6.1.2.1.25.3.5.1.1.1", INTEGER, 3),
        ("1.3.6.1.2.1.43.5.1.1.1.1", INTEGER, 1),
    ]
    for i, kind, descr, cap, level in supplies:
        recs += [
            (f"{s}4.1.{i}", INTEGER, 3),
            (f"{s}5.1.{i}", INTEGER, kind),
            (f"{s}6.1.{i}", OCTETS, descr),
            (f"{s}7.1.{i}", INTEGER, 19),
            (f"{s}8.1.{i}", INTEGER, cap),
            (f"{s}9.1.{i}", INTEGER, level),
        ]
    return recs


def copy_recorded(data_dir: Path, *names: str) -> list[str]:
    """Copy shipped recordings (e.g. "linux-full-walk") into data_dir; returns their communities."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(RECORDED / f"{name}.snmprec", Path(data_dir) / f"{name}.snmprec")
    return list(names)
