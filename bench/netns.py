"""A throw-away network namespace with lo plus veth pairs, so snmpd reports a 24-port ifTable."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=False)


@dataclass
class Namespace:
    """`ip netns` namespace named `name`; `prefix()` runs a command inside it; `delete()` cleans up."""

    name: str
    veth_pairs: int = 12
    created: bool = False

    def create(self) -> None:
        """Create the namespace (replacing a stale one of ours), bring lo up, add the veth pairs."""
        if self.name in self.existing():
            self.delete()
        done = _ip("netns", "add", self.name)
        if done.returncode:
            raise RuntimeError(f"ip netns add failed: {done.stderr.strip()}")
        self.created = True
        self._in_ns("link", "set", "lo", "up")
        for n in range(self.veth_pairs):
            self._in_ns("link", "add", f"v{n}", "type", "veth", "peer", "name", f"w{n}")
            self._in_ns("link", "set", f"v{n}", "up")
            self._in_ns("link", "set", f"w{n}", "up")

    def _in_ns(self, *args: str) -> None:
        done = _ip("netns", "exec", self.name, IP, *args)
        if done.returncode:
            raise RuntimeError(f"ip {' '.join(args)} in {self.name} failed: {done.stderr.strip()}")

    def prefix(self) -> list[str]:
        """Argv prefix that runs a program inside the namespace."""
        return [IP, "netns", "exec", self.name]

    def interfaces(self) -> int:
        """How many links the namespace has (lo included)."""
        out = _ip("netns", "exec", self.name, IP, "-o", "link").stdout
        return len([line for line in out.splitlines() if line.strip()])

    def pids(self) -> list[int]:
        """Processes still running inside the namespace."""
        out = _ip("netns", "pids", self.name).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    def delete(self) -> None:
        """Kill what still runs inside (only processes we started live there), then delete it."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 5
            while pids and self.pids() and time.monotonic() < deadline:
                time.sleep(0.1)
        _ip("netns", "del", self.name)
        self.created = False

    @staticmethod
    def existing() -> list[str]:
        """Names of the namespaces that exist now."""
        return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def available() -> bool:
    """True when we may create network namespaces (root and a working `ip netns`)."""
    if os.geteuid() != 0:
        return False
    probe = "pnbench-probe"
    ok = _ip("netns", "add", probe).returncode == 0
    if ok:
        ok = _ip("netns", "exec", probe, IP, "link", "add", "pv0", "type", "veth", "peer", "name", "pw0").returncode == 0
        _ip("netns", "del", probe)
    return ok
