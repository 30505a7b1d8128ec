"""Many simulated SNMP devices: net-snmp snmpd processes, each answering on ~100 loopback addresses."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SNMPD = shutil.which("snmpd") or "/usr/sbin/snmpd"
SNMPGET = shutil.which("snmpget") or "/usr/bin/snmpget"
COMMUNITY = "public"
PER_AGENT = 100  # snmpd cuts its agentAddress list at ~2,560 characters (FIELD-NOTES)
NO_MIBS = {"MIBS": "", "MIBDIRS": "/nonexistent"}
# What each simulated device shows: system, interfaces, ifXTable and UCD (no HOST-RESOURCES),
# so the collector polls ~16 scalars plus the 24-port interface table.
VIEW = (".1.3.6.1.2.1.1", ".1.3.6.1.2.1.2", ".1.3.6.1.2.1.31", ".1.3.6.1.4.1.2021")


def device_address(i: int, base: int = 1) -> str:
    """Loopback address of simulated device i (127.<base>.X.Y, 200 per /24)."""
    return f"127.{base}.{i // 200}.{i % 200 + 1}"


def tool_env() -> dict[str, str]:
    """Environment for net-snmp tools: no MIB loading (the snmp package ships none)."""
    return {**os.environ, **NO_MIBS}


@dataclass
class Fleet:
    """`count` devices on port `port` served by ceil(count/PER_AGENT) snmpd processes."""

    workdir: Path
    count: int
    port: int
    prefix: list[str] = field(default_factory=list)  # e.g. ["ip", "netns", "exec", "pnbench"]
    base: int = 1
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def addresses(self) -> list[str]:
        """Every device address, in device order."""
        return [device_address(i, self.base) for i in range(self.count)]

    def _config(self, index: int, addresses: list[str]) -> Path:
        d = self.workdir / f"snmpd{index:03d}"
        (d / "persist").mkdir(parents=True, exist_ok=True)
        lines = [
            "agentAddress " + ",".join(f"udp:{a}:{self.port}" for a in addresses),
            f"[snmp] persistentDir {d / 'persist'}",
            *(f"view dev included {oid}" for oid in VIEW),
            f"rocommunity {COMMUNITY} 127.0.0.0/8 -V dev",
            "dontLogTCPWrappersConnects yes",
            f"sysName bench-{index:03d}",
            "sysLocation bench rack",
            "sysContact noc@example.test",
        ]
        conf = d / "snmpd.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self, ready_timeout: float = 60.0) -> None:
        """Start every snmpd and wait until the first and last address of each one answers."""
        addrs = self.addresses()
        groups = [addrs[i : i + PER_AGENT] for i in range(0, len(addrs), PER_AGENT)]
        for index, group in enumerate(groups):
            conf = self._config(index, group)
            cmd = [*self.prefix, SNMPD, "-C", "-c", str(conf), "-f", "-Lf", str(conf.parent / "snmpd.log"),
                   "-p", str(conf.parent / "snmpd.pid")]
            self.procs.append(subprocess.Popen(cmd, env=tool_env(), stdin=subprocess.DEVNULL,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + ready_timeout + 0.5 * len(groups)  # 200 agents at 20,000 devices start slower
        for index, group in enumerate(groups):
            for address in {group[0], group[-1]}:
                while not self.answers(address):
                    proc = self.procs[index]
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (self.workdir / f"snmpd{index:03d}" / "snmpd.log").read_text(errors="replace")
                        raise RuntimeError(f"snmpd {index} not answering on {address}: {log[-1500:]}")
                    time.sleep(0.2)

    def answers(self, address: str) -> bool:
        """One GET of sysUpTime against address."""
        cmd = [*self.prefix, SNMPGET, "-v2c", "-c", COMMUNITY, "-t", "0.5", "-r", "0", "-On",
               f"{address}:{self.port}", "1.3.6.1.2.1.1.3.0"]
        return subprocess.run(cmd, env=tool_env(), capture_output=True, timeout=15, check=False).returncode == 0

    def cpu_seconds(self) -> float:
        """User+system CPU the snmpd processes have used so far."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for proc in self.procs:
            try:
                fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def rss_mb(self) -> float:
        """Resident memory of all snmpd processes together (MB)."""
        total = 0
        for proc in self.procs:
            try:
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total / 1024

    def stop(self) -> None:
        """Terminate every snmpd we started (by pid), then kill stragglers."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs.clear()
