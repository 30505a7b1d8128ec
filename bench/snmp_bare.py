"""Baseline (a): the same requests with bare, tuned pysnmp 7 v1arch (lookupMib=False, var-binds built once)."""

from __future__ import annotations

import asyncio
import gc
import socket
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.hlapi.v1arch.asyncio import CommunityData, SnmpDispatcher, UdpTransportTarget, bulk_cmd, get_cmd
from pysnmp.proto.rfc1902 import Null, ObjectName

from bench import oids
from bench.common import Stopwatch

NULL = Null("")


class BarePoller:
    """One GET of the scalars, one multi-column GETBULK walk per device; values kept as pysnmp objects."""

    def __init__(self, scalars: list[str], columns: list[str], budget: int = oids.VARBIND_BUDGET) -> None:
        self.scalar_vbs = [(ObjectName(o), NULL) for o in scalars]
        self.columns = [ObjectName(o) for o in columns]
        self.budget = budget
        self.auth = CommunityData("public", mpModel=1)  # noqa: S508 - loopback bench agents speak v2c
        self.targets: dict[tuple[str, int], Any] = {}
        self.requests = 0
        self.varbinds = 0
        self.errors = 0
        td = AsyncioDispatcher(loop=asyncio.get_running_loop())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 4 * 1024 * 1024)
        sock.setblocking(False)
        td.register_transport(udp.DOMAIN_NAME, udp.UdpAsyncioTransport().open_server_mode(sock=sock))
        self.disp = SnmpDispatcher(td)

    async def target(self, address: str, port: int) -> Any:
        """Transport targets are made once per device and reused."""
        key = (address, port)
        if key not in self.targets:
            # A long timeout: a CPU-starved client must not count its own queueing as lost packets.
            self.targets[key] = await UdpTransportTarget.create(key, timeout=10.0, retries=1)
        return self.targets[key]

    async def poll(self, address: str, port: int) -> int:
        """Poll one device; returns how many var-binds came back."""
        target = await self.target(address, port)
        error, status, _index, vbs = await get_cmd(self.disp, self.auth, target, *self.scalar_vbs, lookupMib=False)
        self.requests += 1
        if error or status:
            self.errors += 1
            return 0
        got = {name: val for name, val in vbs}
        prefixes = [tuple(c) for c in self.columns]
        last = list(self.columns)
        active = list(range(len(self.columns)))
        rows: list[dict[Any, Any]] = [{} for _ in self.columns]
        while active:
            reps = max(1, self.budget // len(active))
            error, status, _index, vbs = await bulk_cmd(
                self.disp, self.auth, target, 0, reps, *[(last[c], NULL) for c in active], lookupMib=False
            )
            self.requests += 1
            if error or status or not vbs:
                self.errors += 1
                break
            width, done = len(active), set()
            for i, (name, val) in enumerate(vbs):
                col = active[i % width]
                if col in done:
                    continue
                prefix = prefixes[col]
                if name.asTuple()[: len(prefix)] != prefix or val.tagSet == _END_TAG:
                    done.add(col)
                    continue
                rows[col][name] = val
                last[col] = name
            active = [c for c in active if c not in done]
        n = len(got) + sum(len(r) for r in rows)
        self.varbinds += n
        return n

    def close(self) -> None:
        """Close the socket."""
        self.disp.close()
        self.disp.transport_dispatcher.close_dispatcher()


def _end_tag() -> Any:
    from pysnmp.proto.rfc1905 import EndOfMibView

    return EndOfMibView.tagSet


_END_TAG = _end_tag()


async def measure(addresses: list[str], port: int, rounds: int, concurrency: int, workload: str) -> dict[str, Any]:
    """Warm up one round, then CPU seconds per device poll over `rounds` rounds of every address.

    workload: "collector" (what the SnmpCollector asks each steady-state poll), "full" (every
    interface column) or "reference" (FIELD-NOTES' 15 scalars + 4 columns).
    """
    scalars, info = oids.SCALARS, {"source": "profiles"}
    if workload == "collector":
        scalars, columns, info = await oids.collector_request(addresses[-1], port)
    else:
        columns = oids.REF_COLUMNS if workload == "reference" else oids.ALL_COLUMNS
    poller = BarePoller(list(scalars.values()), list(columns.values()))
    sem = asyncio.Semaphore(concurrency)

    async def one(address: str) -> None:
        async with sem:
            await poller.poll(address, port)

    async def sweep() -> None:
        await asyncio.gather(*(one(a) for a in addresses))

    await sweep()
    gc.collect()
    poller.requests = poller.varbinds = poller.errors = 0
    watch = Stopwatch()
    for _ in range(rounds):
        await sweep()
    cpu, wall = watch.stop()
    polls = rounds * len(addresses)
    poller.close()
    return {
        "polls": polls,
        "cpu_s": cpu,
        "wall_s": wall,
        "cpu_ms_per_poll": cpu / polls * 1000,
        "requests_per_poll": poller.requests / polls,
        "varbinds_per_poll": poller.varbinds / polls,
        "errors": poller.errors,
        "workload": workload,
        "scalars": len(scalars),
        "columns": len(columns),
        "column_names": sorted(columns),
        "oids_from": info,
        "concurrency": concurrency,
    }
