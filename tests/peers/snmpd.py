"""Start a real net-snmp snmpd on 127.0.0.1:<free port> with a generated config, for tests and benchmarks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
SNMPGET = shutil.which("snmpget") or "/usr/bin/snmpget"


@dataclass(frozen=True, slots=True)
class V3User:
    """An SNMPv3 USM user created by snmpd's createUser (net-snmp protocol spellings: SHA-256, AES-256)."""

    name: str
    auth_protocol: str | None = "SHA"  # None: noAuthNoPriv
    auth_key: str | None = "authpass123"
    priv_protocol: str | None = "AES"
    priv_key: str | None = "privpass123"

    def config_lines(self) -> list[str]:
        """createUser and rouser lines for snmpd.conf."""
        if not self.auth_protocol or not self.auth_key:
            return [f"createUser {self.name}", f"rouser {self.name} noauth -V all"]
        create = f"createUser {self.name} {self.auth_protocol} {self.auth_key}"
        level = "auth"
        if self.priv_protocol and self.priv_key:
            create += f" {self.priv_protocol} {self.priv_key}"
            level = "priv"
        return [create, f"rouser {self.name} {level} -V all"]


DEFAULT_USERS = (
    V3User("mon", "SHA", "authpass123", "AES", "privpass123"),
    V3User("mon256", "SHA-256", "authpass256", "AES-256", "privpass256"),
    V3User("monauth", "SHA-512", "authpass512", None, None),
    V3User("mondes", "MD5", "authpassmd5", "DES", "privpassdes"),
    V3User("monc", "SHA-224", "authpass224", "AES-256-C", "privpass256c"),
    V3User("monnone", None, None, None, None),
)


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(slots=True)
class SnmpdPeer:
    """A running snmpd: .address/.port, .stop() and .start() again (same port and config, for outages)."""

    workdir: Path
    port: int
    address: str = "127.0.0.1"
    community: str = "public"
    rw_community: str = "private"
    users: tuple[V3User, ...] = DEFAULT_USERS
    ipv6: bool = False  # also listen on [::1]:port (communities for ::1 too)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def conf(self) -> Path:
        """The generated snmpd.conf."""
        return self.workdir / "snmpd.conf"

    @property
    def log(self) -> Path:
        """snmpd's log file."""
        return self.workdir / "snmpd.log"

    def start(self, ready_timeout: float = 15.0) -> SnmpdPeer:
        """Start snmpd and wait until it answers a GET."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
        cmd = [
            SNMPD,
            "-C",
            "-c",
            str(self.conf),
            "-f",
            "-Lf",
            str(self.log),
            "-p",
            str(self.workdir / "snmpd.pid"),
        ]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd exited with {self.proc.returncode}: {self._log_tail()}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"snmpd did not answer on port {self.port}: {self._log_tail()}")

    def stop(self) -> None:
        """Stop snmpd (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def _answers(self) -> bool:
        cmd = [
            SNMPGET,
            "-v2c",
            "-c",
            self.community,
            "-t",
            "0.3",
            "-r",
            "0",
            "-On",
            f"{self.address}:{self.port}",
            "1.3.6.1.2.1.1.3.0",
        ]
        env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
        done = subprocess.run(cmd, env=env, capture_output=True, timeout=10, check=False)
        return done.returncode == 0

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def write_config(
    peer: SnmpdPeer,
    sys_name: str,
    sys_location: str,
    sys_contact: str | None,
    extra_lines: tuple[str, ...] = (),
) -> None:
    """Write snmpd.conf: loopback-only communities, v3 users, fixed system strings, no extend."""
    persist = peer.workdir / "persist"
    persist.mkdir(parents=True, exist_ok=True)
    address = f"udp:{peer.address}:{peer.port}" + (f",udp6:[::1]:{peer.port}" if peer.ipv6 else "")
    lines = [
        f"agentAddress {address}",
        f"[snmp] persistentDir {persist}",
        "view all included .1",
        f"rocommunity {peer.community} 127.0.0.1 -V all",
        f"rwcommunity {peer.rw_community} 127.0.0.1 -V all",
        "dontLogTCPWrappersConnects yes",
        f"sysName {sys_name}",
        f"sysLocation {sys_location}",
    ]
    if peer.ipv6:
        lines += [f"rocommunity6 {peer.community} ::1 -V all", f"rwcommunity6 {peer.rw_community} ::1 -V all"]
    if sys_contact is not None:  # a configured sysContact is read-only; leave it out to test SET
        lines.append(f"sysContact {sys_contact}")
    for user in peer.users:
        lines.extend(user.config_lines())
    lines.extend(extra_lines)
    peer.conf.write_text("\n".join(lines) + "\n")


def start_snmpd(
    tmp_path: Path,
    *,
    port: int | None = None,
    community: str = "public",
    rw_community: str = "private",
    users: tuple[V3User, ...] = DEFAULT_USERS,
    sys_name: str = "pocketnoc-test",
    sys_location: str = "rack 1, lab",
    sys_contact: str | None = "noc@example.test",
    extra_lines: tuple[str, ...] = (),
    ipv6: bool = False,
) -> SnmpdPeer:
    """Write a config under tmp_path/snmpd and start snmpd on 127.0.0.1; returns the running peer."""
    workdir = Path(tmp_path) / "snmpd"
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # a free port can be taken between our probe and snmpd's bind
        peer = SnmpdPeer(workdir, port or free_udp_port(), community=community, rw_community=rw_community, users=users, ipv6=ipv6)
        write_config(peer, sys_name, sys_location, sys_contact, extra_lines)
        try:
            return peer.start()
        except RuntimeError:
            if port is not None or attempt == 2:
                raise
    raise AssertionError("unreachable")
