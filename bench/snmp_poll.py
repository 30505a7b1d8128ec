"""CPU per device poll of the SNMP collector against snmpsim (run: .venv/bin/python -m bench.snmp_poll).

Workloads, each polled sequentially N times against one simulated 24-port device:
  field-notes  15 scalars GET + a 4-column walk of a 24-port ifTable (~111 var-binds), as in FIELD-NOTES
  collector    SnmpCollector.collect() with the detected, tuned plan (system + if profile, 24 ports)
  collector-linux  SnmpCollector.collect() on snmpsim's linux-full-walk (system, if, host, ucd)
CPU is time.process_time() of this process only (snmpsim runs in its own process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agents.base import SnmpCredentials, Target
from agents.snmp import SnmpClient, SnmpCollector
from tests.peers.snmpsim import (
    INTEGER,
    copy_recorded,
    interface_records,
    start_snmpsim,
    system_records,
    write_snmprec,
)

UCD = "1.3.6.1.4.1.2021."
SCALARS = [f"1.3.6.1.2.1.1.{i}.0" for i in range(1, 8)] + [
    "1.3.6.1.2.1.2.1.0",
    *(f"{UCD}4.{i}.0" for i in (3, 4, 5, 6, 14, 15)),
    f"{UCD}11.11.0",
]
COLUMNS = ["1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.8", "1.3.6.1.2.1.31.1.1.1.6", "1.3.6.1.2.1.31.1.1.1.10"]


def device24() -> list[tuple[str, str, object]]:
    """A 24-port device with the 15 benchmark scalars."""
    recs = [*system_records("bench device", "1.3.6.1.4.1.9.1.1208", "bench24", services=2)]
    recs += interface_records(24)
    recs += [(f"{UCD}4.{i}.0", INTEGER, 1_000_000 + i) for i in (3, 4, 5, 6, 14, 15)]
    recs.append((f"{UCD}11.11.0", INTEGER, 90))
    return recs


async def measure(name: str, polls: int, poll: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    """Run poll() `polls` times after a warm-up; CPU and wall per poll in ms."""
    for _ in range(5):
        await poll()
    before, cpu, wall = os.times(), time.process_time(), time.perf_counter()
    for _ in range(polls):
        await poll()
    after, cpu, wall = os.times(), time.process_time() - cpu, time.perf_counter() - wall
    ms = 1000 / polls
    return {
        "workload": name,
        "polls": polls,
        "cpu_ms": round(cpu * ms, 2),  # user + system: loopback sendto runs the receiver's softirq in our time
        "user_ms": round((after.user - before.user) * ms, 2),
        "sys_ms": round((after.system - before.system) * ms, 2),
        "wall_ms": round(wall * ms, 2),
    }


async def run(polls: int, address: str, port: int) -> list[dict[str, Any]]:
    """Measure every workload against a running snmpsim."""
    results = []
    bench = Target(address, port, snmp=SnmpCredentials("2c", "bench24"), timeout=5, retries=1)
    linux = Target(address, port, snmp=SnmpCredentials("2c", "linux-full-walk"), timeout=5, retries=1)
    client = SnmpClient()

    async def field_notes() -> None:
        await client.get(bench, SCALARS)
        await client.walk_columns(bench, COLUMNS)

    results.append(await measure("field-notes", polls, field_notes))
    collector = SnmpCollector(client)
    results.append(await measure("collector", polls, lambda: collector.collect(bench)))
    results.append(await measure("collector-linux", polls, lambda: collector.collect(linux)))
    await client.close()
    return results


def main() -> None:
    """Start snmpsim with the benchmark devices, measure, print JSON lines."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-snmp-") as tmp:
        data = Path(tmp) / "data"
        write_snmprec(data / "bench24.snmprec", device24())
        copy_recorded(data, "linux-full-walk")
        sim = start_snmpsim(data, workdir=Path(tmp) / "work")
        try:
            for row in asyncio.run(run(args.polls, sim.address, sim.port)):
                print(json.dumps(row))
        finally:
            sim.stop()


if __name__ == "__main__":
    main()
