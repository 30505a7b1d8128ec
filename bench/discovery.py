"""Discovery of a /22 of loopback addresses (1,024), 200 of them answering SNMP (two snmpd processes from
bench/fleet.py, 100 addresses each): wall time at the default rate limit, probes sent, devices found.

Run: python -m bench.discovery [runs]. Each run tries an SNMPv3 user first (the agents do not know it, as on a
network where only some devices have v3), then the v2c community.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agents.base import SnmpCredentials
from agents.discovery import Sweeper, SweepOptions, v3_first
from agents.discovery_scope import DEFAULT_RATE, TokenBucket, parse_ranges
from bench.fleet import COMMUNITY, Fleet
from tests.peers.snmpd import free_udp_port

BASE = 80
RANGE = f"127.{BASE}.0.0/22"
ANSWERING = 200


async def one_run(port: int) -> tuple[float, int, int, int]:
    creds = v3_first([
        SnmpCredentials(version="2c", community=COMMUNITY),
        SnmpCredentials(version="3", user="mon", auth_protocol="sha", auth_key="authpass123", priv_protocol="aes128",
                        priv_key="privpass123"),
    ])
    options = SweepOptions(networks=parse_ranges([RANGE]), credentials=creds, snmp_port=port)
    sweeper = Sweeper(options, TokenBucket(rate=DEFAULT_RATE))
    started = time.perf_counter()
    try:
        result = await sweeper.run()
    finally:
        await sweeper.close()
    took = time.perf_counter() - started
    snmp = sum(1 for f in result.found.values() if f.credential is not None)
    return took, result.probes, len(result.found), snmp


def main(runs: int = 3) -> None:
    fleet = Fleet(Path(tempfile.mkdtemp(prefix="bench-discovery-")), ANSWERING, free_udp_port(), base=BASE)
    fleet.start()
    try:
        results = [asyncio.run(one_run(fleet.port)) for _ in range(runs)]
    finally:
        fleet.stop()
    times = [r[0] for r in results]
    print(f"discovery of {RANGE} (1,024 addresses, {ANSWERING} answering SNMP: net-snmp snmpd), rate {DEFAULT_RATE:.0f}/s, "
          "credentials v3 (unknown to the agents) then v2c, timeout 1 s, 1 retry")
    for i, (took, probes, found, snmp) in enumerate(results, 1):
        print(f"  run {i}: {took:.1f} s, {probes} probes ({probes / took:.0f}/s), {found} answered, {snmp} answered SNMP")
    print(f"  wall: min {min(times):.1f} s, median {statistics.median(times):.1f} s, max {max(times):.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
