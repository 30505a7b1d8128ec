"""Facts about the machine and software a benchmark ran on, and a fixed pure-Python CPU calibration."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("pysnmp", "pyasn1", "paramiko", "SQLAlchemy", "APScheduler", "fastapi")


def loadavg() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def calibration_ms() -> float:
    """Best of three CPU times of a fixed pure-Python loop (compare machines and runs with it)."""
    best = float("inf")
    for _ in range(3):
        start, acc = time.process_time(), 0
        for i in range(3_000_000):
            acc += i * i % 7
        best = min(best, time.process_time() - start)
    return best * 1000


def _tool_version(cmd: list[str], pattern: str) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "missing"
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else "unknown"


def facts() -> dict[str, Any]:
    """CPU, memory, Python, package and tool versions, load and calibration."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "net_snmp": _tool_version(["/usr/sbin/snmpd", "-v"], r"NET-SNMP version:\s*(\S+)"),
        "openssh": _tool_version(["/usr/bin/ssh", "-V"], r"OpenSSH_([^\s,]+)"),
        "load_start": loadavg(),
        "calibration_ms": calibration_ms(),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
