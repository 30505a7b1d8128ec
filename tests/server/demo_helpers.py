"""Helpers for the demo tests: net-snmp's command-line tools against the simulated devices, a free UDP port, a running
`pocketnoc demo`."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

from tests.server.app_fleet import free_port
from tests.server.conftest import POCKETNOC

IF_TABLE = "1.3.6.1.2.1.2.2.1"
IF_ADMIN, IF_OPER, SYS_LOCATION = f"{IF_TABLE}.7", f"{IF_TABLE}.8", "1.3.6.1.2.1.1.6.0"
_ENV = {**os.environ, "MIBS": ""}  # numeric OIDs only: the snmp package ships no MIBs


def free_udp_port() -> int:
    """A UDP port free on every address (the simulator listens on many loopback addresses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", 0))
        port: int = sock.getsockname()[1]
        return port


def snmp_run(tool: str, device: dict[str, Any], *oids: str, timeout: int = 5) -> subprocess.CompletedProcess[str]:
    """Run one net-snmp tool (snmpget, snmpbulkwalk) with the device's community and numeric output."""
    address = f"{device['address']}:{device['snmp']['port']}"
    return subprocess.run(
        [tool, "-v2c", "-c", device["snmp"]["community"], "-On", "-Oqt", "-t", str(timeout), "-r", "1",
         address, *oids],
        capture_output=True, text=True, env=_ENV, timeout=60,
    )


def snmp_get(device: dict[str, Any], *oids: str) -> dict[str, str]:
    """OID -> value (quotes removed) from one snmpget."""
    result = snmp_run("snmpget", device, *oids)
    assert result.returncode == 0, result.stderr
    return _parse(result.stdout)


def snmp_walk(device: dict[str, Any], oid: str) -> dict[str, str]:
    """OID -> value from an snmpbulkwalk of one subtree."""
    result = snmp_run("snmpbulkwalk", device, oid)
    assert result.returncode == 0, result.stderr
    return {key: value for key, value in _parse(result.stdout).items() if key.startswith(f".{oid}.")}


def _parse(output: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith(".1."):
            oid, _, value = line.partition(" ")
            values[oid] = value.strip('"')
    return values


def snmp_set(device: dict[str, Any], oid: str, kind: str, value: str) -> subprocess.CompletedProcess[str]:
    """One snmpset with the device's write community (the demo's switches take SETs)."""
    address = f"{device['address']}:{device['snmp']['port']}"
    return subprocess.run(
        ["snmpset", "-v2c", "-c", device["snmp"]["write"]["community"], "-On", "-Oqt", "-t", "5", "-r", "1",
         address, oid, kind, value],
        capture_output=True, text=True, env=_ENV, timeout=60,
    )


class RunningDemo:
    """A `pocketnoc demo` subprocess on free ports; its banner lines and the admin password it printed."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir, self.port, self.sim_port = data_dir, free_port(), free_udp_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
        self.process = subprocess.Popen(
            [str(POCKETNOC), "demo", "--data-dir", str(data_dir), "--port", str(self.port),
             "--sim-port", str(self.sim_port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("INFO:     Uvicorn running"):
                break
        assert self.process.poll() is None, "\n".join(self.lines)
        self.password = next(x.split()[1] for x in self.lines if x.startswith("password:"))
        self.url = f"http://127.0.0.1:{self.port}"
        self._drain = threading.Thread(target=self.process.stdout.read, daemon=True)
        self._drain.start()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
