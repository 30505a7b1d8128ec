"""Baseline (b): net-snmp's snmpbulkwalk of ifTable and ifXTable, one process per walk, on the same agents."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from bench.common import children_cpu, quantile
from bench.fleet import COMMUNITY, tool_env

SNMPBULKWALK = "/usr/bin/snmpbulkwalk"
TABLES = ("1.3.6.1.2.1.2.2", "1.3.6.1.2.1.31.1.1")


def walk(address: str, port: int, oid: str) -> int:
    """One `snmpbulkwalk -v2c -c public -Cr25`; returns the number of lines printed."""
    cmd = [SNMPBULKWALK, "-v2c", "-c", COMMUNITY, "-Cr25", "-On", f"{address}:{port}", oid]
    done = subprocess.run(cmd, env=tool_env(), capture_output=True, timeout=30, check=False)
    if done.returncode:
        raise RuntimeError(f"snmpbulkwalk failed: {done.stderr[:300]!r}")
    return done.stdout.count(b"\n")


def measure(addresses: list[str], port: int) -> dict[str, Any]:
    """Walk both tables of each address in turn; wall time and the children's CPU per device."""
    walk(addresses[0], port, TABLES[0])  # page cache warm
    walls: list[float] = []
    varbinds = 0
    cpu0 = children_cpu()
    for address in addresses:
        start = time.perf_counter()
        varbinds = sum(walk(address, port, oid) for oid in TABLES)
        walls.append(time.perf_counter() - start)
    cpu = children_cpu() - cpu0
    n = len(addresses)
    return {
        "devices": n,
        "wall_ms_per_device_p50": quantile(walls, 0.5) * 1000,
        "wall_ms_per_device_mean": sum(walls) / n * 1000,
        "cpu_ms_per_device": cpu / n * 1000,
        "varbinds_per_device": varbinds,
        "processes_per_device": len(TABLES),
    }
