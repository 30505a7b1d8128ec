"""Send SNMP traps and informs with net-snmp's snmptrap/snmpinform, and blast pre-encoded datagrams.

Run as `python -m tests.peers.traps PORT RATE COUNT HEX [MARK_OFFSET]` to send COUNT copies of one datagram
at RATE per second (0 = as fast as possible); with MARK_OFFSET, each copy carries time.monotonic() as
17 ASCII characters at that offset (CLOCK_MONOTONIC is system-wide, so the receiver can compute latency).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

SNMPTRAP = shutil.which("snmptrap") or "/usr/bin/snmptrap"
SNMPINFORM = shutil.which("snmpinform") or "/usr/bin/snmpinform"
REPO = Path(__file__).resolve().parents[2]
# A 17-character placeholder the blaster overwrites with the send time ("%017.6f").
MARK = b"T" * 17

# (OID, net-snmp type letter, value): i INTEGER, s STRING, x hex STRING, o OID, a IpAddress, t TimeTicks, u Gauge
Varbind = tuple[str, str, str]


def _env() -> dict[str, str]:
    return {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}


@dataclass(frozen=True, slots=True)
class V3Sender:
    """An SNMPv3 sender's USM settings, in net-snmp's spellings (SHA, SHA-256, AES, AES-256, DES)."""

    user: str = "mon"
    auth_protocol: str | None = "SHA"
    auth_key: str | None = "authpass123"
    priv_protocol: str | None = "AES"
    priv_key: str | None = "privpass123"
    level: str | None = None  # force a level (to test downgrades); default follows the keys

    def args(self) -> list[str]:
        """The -u/-l/-a/-A/-x/-X arguments."""
        level = self.level or ("authPriv" if self.priv_key else "authNoPriv" if self.auth_key else "noAuthNoPriv")
        args = ["-u", self.user, "-l", level]
        if self.auth_key and level != "noAuthNoPriv":
            args += ["-a", self.auth_protocol or "SHA", "-A", self.auth_key]
        if self.priv_key and level == "authPriv":
            args += ["-x", self.priv_protocol or "AES", "-X", self.priv_key]
        return args


def random_engine_id() -> str:
    """A fresh sender engine ID (enterprise-format, 8000 1f88 04 + 8 random bytes) as 0x hex."""
    return "0x80001f8804" + secrets.token_hex(8)


def _varbind_args(varbinds: Sequence[Varbind]) -> list[str]:
    return [part for varbind in varbinds for part in varbind]


def _destination(port: int, host: str) -> str:
    return f"udp6:[{host}]:{port}" if ":" in host else f"{host}:{port}"


def v1_trap_args(
    port: int,
    enterprise: str,
    generic: int,
    specific: int,
    varbinds: Sequence[Varbind] = (),
    *,
    community: str = "public",
    agent: str = "127.0.0.1",
    uptime: str = "4242",
    host: str = "127.0.0.1",
) -> list[str]:
    """snmptrap -v1 command line."""
    return [
        SNMPTRAP, "-v1", "-c", community, _destination(port, host),
        enterprise, agent, str(generic), str(specific), uptime, *_varbind_args(varbinds),
    ]  # fmt: skip


def v2c_args(
    port: int,
    trap_oid: str,
    varbinds: Sequence[Varbind] = (),
    *,
    community: str = "public",
    inform: bool = False,
    uptime: str = "4242",
    host: str = "127.0.0.1",
) -> list[str]:
    """snmptrap (or snmpinform) -v2c command line; informs wait 2 s once, no retries."""
    tool = [SNMPINFORM, "-t", "2", "-r", "0"] if inform else [SNMPTRAP]
    return [*tool, "-v2c", "-c", community, _destination(port, host), uptime, trap_oid, *_varbind_args(varbinds)]


def v3_args(
    port: int,
    trap_oid: str,
    varbinds: Sequence[Varbind] = (),
    *,
    sender: V3Sender | None = None,
    engine_id: str | None = None,
    inform: bool = False,
    uptime: str = "4242",
    host: str = "127.0.0.1",
) -> list[str]:
    """snmptrap -v3 (a trap needs the sender's engine ID: -e) or snmpinform -v3 (discovers the receiver's)."""
    sender = sender or V3Sender()
    tool = [SNMPINFORM, "-t", "2", "-r", "1"] if inform else [SNMPTRAP, "-e", engine_id or random_engine_id()]
    return [*tool, "-v3", *sender.args(), _destination(port, host), uptime, trap_oid, *_varbind_args(varbinds)]


def run(args: Sequence[str], timeout: float = 20.0) -> subprocess.CompletedProcess[bytes]:
    """Run a net-snmp tool without MIB loading (numeric OIDs only); never through a shell."""
    return subprocess.run(list(args), env=_env(), capture_output=True, timeout=timeout, check=False)


def send(args: Sequence[str], timeout: float = 20.0) -> None:
    """Run a net-snmp tool and raise if it failed."""
    done = run(args, timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} exited {done.returncode}: {done.stderr.decode(errors='replace')}")


def capture(build: Callable[[int], Sequence[str]], timeout: float = 10.0) -> bytes:
    """Run the command build(port) against a scratch UDP socket and return the first datagram it sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        proc = subprocess.Popen(
            list(build(int(sock.getsockname()[1]))),
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            datagram, _addr = sock.recvfrom(65535)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        return datagram


def blaster(port: int, rate: float, count: int, datagram: bytes, mark_offset: int | None = None) -> subprocess.Popen[bytes]:
    """Start a separate process that sends count copies of datagram to 127.0.0.1:port at rate per second."""
    args = [sys.executable, "-m", "tests.peers.traps", str(port), str(rate), str(count), datagram.hex()]
    if mark_offset is not None:
        args.append(str(mark_offset))
    return subprocess.Popen(args, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _blast(port: int, rate: float, count: int, datagram: bytes, mark_offset: int | None) -> None:
    buf = bytearray(datagram)
    started = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            if rate > 0:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if mark_offset is not None:
                buf[mark_offset : mark_offset + len(MARK)] = b"%017.6f" % time.monotonic()
            try:
                sock.sendto(buf, ("127.0.0.1", port))
            except OSError:  # ENOBUFS under a flood: that datagram is lost, like on a real network
                continue
    print(f"{count} {time.monotonic() - started:.6f}")


if __name__ == "__main__":
    _port, _rate, _count, _hex = sys.argv[1:5]
    _mark = int(sys.argv[5]) if len(sys.argv) > 5 else None
    _blast(int(_port), float(_rate), int(_count), bytes.fromhex(_hex), _mark)
