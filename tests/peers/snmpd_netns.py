"""net-snmp snmpd inside its own network namespace with a veth pair, so SETs of ifAdminStatus really take
ports down and up without touching this machine's interfaces; a UDP relay brings it to 127.0.0.1:<port>.
The tests' switch does not cache its ifTable (a port reads as the kernel has it at the moment of the request); the
on-call benchmark's keeps snmpd's default 3 s cache, as a real agent has one."""

from __future__ import annotations

import contextlib
import ctypes
import os
import selectors
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers.snmpd import SNMPD, SNMPGET, free_udp_port

CLONE_NEWNET = 0x40000000
INNER_PORT = 1161
VETH = ("pn0", "pn1")
SNMPSET = shutil.which("snmpset") or "/usr/bin/snmpset"
# NET-SNMP-AGENT-MIB::nsCacheTimeout of the ifTable (its index is the table's OID): snmpd caches the ifTable (and the
# ifXTable with it) for 3 s by default, so a port's change shows up to 3 s late. It is writable, and 0 means "reload
# every request": the tests' switch answers what the kernel says now, and they wait for state, not for a cache.
IFTABLE_CACHE_TIMEOUT = "1.3.6.1.4.1.8072.1.5.3.1.2.1.3.6.1.2.1.2.2"


def netns_available() -> str | None:
    """Why a private network namespace with a veth pair cannot be made here, or None when it can."""
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", "ip link add pnprobe0 type veth peer name pnprobe1"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return None if probe.returncode == 0 else f"cannot create a veth pair in a network namespace: {probe.stderr.strip()}"


def _socket_in(pid: int) -> socket.socket:
    """A UDP socket living in the network namespace of process `pid`."""
    libc = ctypes.CDLL(None, use_errno=True)
    found: dict[str, object] = {}

    def enter() -> None:
        # setns changes only this thread's namespace; the socket keeps it after the thread ends.
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                found["error"] = OSError(ctypes.get_errno(), "setns failed")
                return
            found["sock"] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        finally:
            os.close(fd)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    if "error" in found:
        raise found["error"]  # type: ignore[misc]
    return found["sock"]  # type: ignore[return-value]


@dataclass
class NetnsSnmpd:
    """snmpd in a private network namespace, reachable at 127.0.0.1:port through a relay."""

    workdir: Path
    port: int
    community: str = "public"
    rw_community: str = "private"
    iftable_cache: bool = True  # False: the ifTable is read afresh for every request (nsCacheTimeout 0)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _outer: socket.socket | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def _nsenter(self, *args: str) -> str:
        assert self.proc is not None
        done = subprocess.run(
            ["nsenter", "-t", str(self.proc.pid), "-n", *args], capture_output=True, text=True, timeout=20, check=True
        )
        return done.stdout

    def if_index(self, name: str) -> int:
        """The kernel ifindex of an interface in the namespace (snmpd's ifIndex on Linux)."""
        return int(self._nsenter("ip", "-o", "link", "show", name).split(":", 1)[0])

    def admin_up(self, name: str) -> bool:
        """Whether the interface is administratively up, as the kernel says."""
        flags = self._nsenter("ip", "-o", "link", "show", name).split("<", 1)[1].split(">", 1)[0].split(",")
        return "UP" in flags

    def snmpget(self, oid: str) -> str:
        """One value through the relay with the net-snmp CLI."""
        env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
        cmd = [SNMPGET, "-v2c", "-c", self.community, "-t", "1", "-r", "2", "-Oqv", f"127.0.0.1:{self.port}", oid]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20, check=True).stdout.strip()

    def snmpset_int(self, oid: str, value: int) -> str:
        """SET one INTEGER through the relay with the net-snmp CLI (the write community)."""
        env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
        cmd = [SNMPSET, "-v2c", "-c", self.rw_community, "-t", "1", "-r", "2", "-Oqv", f"127.0.0.1:{self.port}", oid, "i",
               str(value)]  # fmt: skip
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=20, check=True).stdout.strip()

    def _relay(self) -> None:
        # One socket in the namespace per client address, so answers go back to whoever asked.
        assert self._outer is not None and self.proc is not None
        inner: dict[tuple[str, int], socket.socket] = {}
        with selectors.DefaultSelector() as sel:
            sel.register(self._outer, selectors.EVENT_READ, None)
            while not self._stop.is_set():
                for key, _mask in sel.select(timeout=0.2):
                    try:
                        if key.data is None:
                            data, client = self._outer.recvfrom(65535)
                            if client not in inner:
                                inner[client] = _socket_in(self.proc.pid)
                                sel.register(inner[client], selectors.EVENT_READ, client)
                            inner[client].sendto(data, ("127.0.0.1", INNER_PORT))
                        else:
                            self._outer.sendto(key.fileobj.recv(65535), key.data)  # type: ignore[union-attr]
                    except OSError:
                        continue  # e.g. ECONNREFUSED while snmpd starts: the client retries
        for sock in inner.values():
            sock.close()

    def start(self, ready_timeout: float = 20.0) -> NetnsSnmpd:
        """Start the namespace, veth pair and snmpd, then the relay; wait until a GET answers."""
        persist = self.workdir / "persist"
        persist.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "snmpd.conf"
        conf.write_text(
            "\n".join(
                [
                    f"agentAddress udp:127.0.0.1:{INNER_PORT}",
                    f"[snmp] persistentDir {persist}",
                    "view all included .1",
                    f"rocommunity {self.community} 127.0.0.1 -V all",
                    f"rwcommunity {self.rw_community} 127.0.0.1 -V all",
                    "sysName netns-switch",
                    "sysLocation lab",
                    "",
                ]
            )
        )
        script = (
            f"ip link set lo up && ip link add {VETH[0]} type veth peer name {VETH[1]} && "
            f"exec env MIBS= MIBDIRS=/nonexistent {SNMPD} -C -c {conf} -f -Lf {self.workdir / 'snmpd.log'} "
            f"-p {self.workdir / 'snmpd.pid'}"
        )
        self.proc = subprocess.Popen(["unshare", "-n", "sh", "-c", script], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + ready_timeout
        ours = os.readlink("/proc/self/ns/net")
        while time.monotonic() < deadline:  # until unshare has moved the process into its new namespace
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self.proc.pid}/ns/net") != ours:
                    break
            time.sleep(0.02)
        self._outer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._outer.bind(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._relay, daemon=True, name="snmpd-netns-relay")
        self._thread.start()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd in the namespace exited with {self.proc.returncode}")
            with contextlib.suppress(subprocess.SubprocessError):
                if self.snmpget("1.3.6.1.2.1.1.5.0"):
                    if not self.iftable_cache:
                        assert self.snmpset_int(IFTABLE_CACHE_TIMEOUT, 0) == "0", "snmpd kept its ifTable cache"
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("snmpd in the namespace did not answer")

    def stop(self) -> None:
        """Stop the relay and snmpd (the namespace and its veth pair go with the process)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._outer is not None:
            self._outer.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def start_netns_snmpd(tmp_path: Path, iftable_cache: bool = True) -> NetnsSnmpd:
    """snmpd with a veth pair (pn0, pn1, both down) in a fresh network namespace, relayed to 127.0.0.1 (its ifTable
    cached as snmpd does by default, or read afresh for every request)."""
    workdir = tmp_path / "snmpd-netns"
    workdir.mkdir(parents=True, exist_ok=True)
    return NetnsSnmpd(workdir, free_udp_port(), iftable_cache=iftable_cache).start()
