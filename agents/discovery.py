"""A discovery sweep: ICMP and TCP probes under a rate limit, SNMP asked on what answers, the kind detected.

`sweep` never probes an address outside the run's ranges (the seed and neighbours too are checked against
them); every probe - echo, TCP connect, SNMP request - takes a token from the bucket first. Credentials are
tried in the order given (the caller puts v3 first); which one worked is reported by its position only, and
neither credentials nor their failures are logged.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from agents.base import CollectError, SnmpCredentials, Target
from agents.discovery_scope import Network, TokenBucket, addresses, in_scope
from agents.neighbours import Neighbour, read_neighbours, safe
from agents.net_ping import ping
from agents.profiles import DETECT_SCALARS, choose_profiles
from agents.snmp_client import SnmpClient
from agents.snmp_families import Family, detection_probes, facts_of, family_kind, family_of, load_families_cached
from agents.snmp_hardware import read_hardware
from agents.snmp_values import Value

DEFAULT_PORTS: Final = (22, 443)
SYSTEM_OIDS: Final = {"sys_descr": "1.3.6.1.2.1.1.1.0", "sys_object_id": "1.3.6.1.2.1.1.2.0", "sys_name": "1.3.6.1.2.1.1.5.0"}
CONCURRENCY: Final = 256
MAX_FOLLOW: Final = 512  # neighbours followed from the seed, at most


@dataclass(frozen=True, slots=True)
class SweepOptions:
    """How to sweep: the ranges (the only addresses ever probed), seed, credentials in order, ports and limits."""

    networks: tuple[Network, ...]
    credentials: tuple[SnmpCredentials, ...]
    seed: str | None = None
    sweep: bool = True  # probe every address of the ranges (else only the seed and the neighbours it leads to)
    snmp_port: int = 161
    tcp_ports: tuple[int, ...] = DEFAULT_PORTS
    icmp: bool = True
    timeout: float = 1.0
    retries: int = 1
    neighbours: bool = True
    fdb: bool = False  # the forwarding table can be thousands of rows: only when asked


@dataclass(slots=True)
class Found:
    """One address that answered; SNMP facts when a credential worked (`credential` is its position)."""

    address: str
    alive_by: str  # icmp, tcp/PORT, or snmp
    open_ports: list[int] = field(default_factory=list)
    credential: int | None = None
    sys_name: str = ""
    sys_descr: str = ""
    sys_object_id: str = ""
    kind: str = ""
    family: str = ""
    profiles: list[str] = field(default_factory=list)
    model: str = ""
    serial: str = ""
    if_count: int | None = None
    neighbours: list[Neighbour] = field(default_factory=list)


@dataclass(slots=True)
class SweepResult:
    """Everything a sweep learned, with its probe count and the neighbour addresses it did not follow (out of scope)."""

    found: dict[str, Found] = field(default_factory=dict)
    probes: int = 0
    addresses: int = 0
    skipped_out_of_scope: list[str] = field(default_factory=list)


Progress = Callable[[int, int], Awaitable[None] | None]


class Sweeper:
    """One run's probing; create it inside the event loop that runs it."""

    def __init__(
        self, options: SweepOptions, bucket: TokenBucket | None = None, client: SnmpClient | None = None,
        families: tuple[Family, ...] | None = None,
    ) -> None:
        self.options = options
        self.bucket = bucket or TokenBucket()
        self.client = client or SnmpClient(max_in_flight=CONCURRENCY)
        self.families = load_families_cached() if families is None else families
        self.result = SweepResult()
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def _icmp(self, address: str) -> bool:
        await self.bucket.take()
        try:
            result = await ping(address, count=1, wait=self.options.timeout)
        except (CollectError, OSError):
            return False
        return bool(result.rtts)

    async def _tcp(self, address: str, port: int) -> str:
        """'open', 'closed' (refused: the host is there) or '' (silence)."""
        await self.bucket.take()
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(self.options.timeout):
                await loop.sock_connect(sock, (address, port))
            return "open"
        except TimeoutError:
            return ""
        except OSError as exc:
            return "closed" if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET) else ""
        finally:
            sock.close()

    def _target(self, address: str, creds: SnmpCredentials) -> Target:
        return Target(address, self.options.snmp_port, snmp=creds, timeout=self.options.timeout, retries=self.options.retries)

    async def _snmp_get(self, target: Target, oids: list[str]) -> dict[str, Value] | None:
        await self.bucket.take()
        try:
            return await self.client.get(target, oids)
        except CollectError:
            return None

    async def _identify(self, found: Found) -> None:
        """Try each credential in order; on the first answer, read the facts detection needs and detect."""
        oids = {**SYSTEM_OIDS, **DETECT_SCALARS}
        for position, creds in enumerate(self.options.credentials):
            target = self._target(found.address, creds)
            got = await self._snmp_get(target, list(oids.values()))
            if got is None or all(v is None for v in got.values()):
                continue
            values = {name: got.get(oid) for name, oid in oids.items()}
            found.credential = position
            await self._detect(found, target, values)
            return

    async def _detect(self, found: Found, target: Target, values: dict[str, Value]) -> None:
        probes = detection_probes(self.families)
        await self.bucket.take()
        try:
            hits = await self.client.get_next(target, list(probes))
        except CollectError:
            hits = {}
        answered = frozenset(probes[oid] for oid, hit in hits.items() if hit is not None)
        facts = facts_of(values, answered)
        family = family_of(self.families, facts)
        found.kind = family_kind(family, facts)
        found.family = family.name if family else ""
        found.profiles = list(choose_profiles(answered))
        found.sys_name = safe(values.get("sys_name"))
        found.sys_descr = safe(values.get("sys_descr"), 512)
        found.sys_object_id = safe(values.get("sys_object_id"))
        found.if_count = facts.if_number
        await self.bucket.take()
        try:
            hardware = await read_hardware(self.client, target, family)
        except CollectError:
            hardware = {}
        found.model = safe(hardware.get("hw_model"))
        found.serial = safe(hardware.get("hw_serial"))
        if self.options.neighbours:
            await self.bucket.take()
            try:
                found.neighbours = await read_neighbours(self.client, target, fdb=self.options.fdb)
            except CollectError:
                found.neighbours = []

    async def probe(self, address: str) -> Found | None:
        """Probe one address (in scope, or nothing is sent): TCP ports, ICMP if they were silent, then SNMP on what answered."""
        if not in_scope(address, self.options.networks) or address in self.result.found:
            return None
        async with self._gate:
            states = [(port, await self._tcp(address, port)) for port in self.options.tcp_ports]
            open_ports = [port for port, state in states if state == "open"]
            alive = next((f"tcp/{p}" for p, s in states if s), "")
            if not alive and self.options.icmp and await self._icmp(address):  # a refused connect already proves the host
                alive = "icmp"
            if not alive:
                return None
            found = Found(address, alive, open_ports)
            await self._identify(found)
            self.result.found[address] = found
            return found

    async def run(self, progress: Progress | None = None) -> SweepResult:
        """Sweep the ranges (if asked), probe the seed, then follow neighbours (inside the ranges only)."""
        todo = addresses(self.options.networks) if self.options.sweep else iter(())
        hosts = (n.num_addresses - (2 if n.version == 4 and n.num_addresses > 2 else 0) for n in self.options.networks)
        total = sum(hosts) if self.options.sweep else 0
        self.result.addresses = total + (1 if self.options.seed else 0)
        done = 0

        async def one(address: str) -> None:
            nonlocal done
            await self.probe(address)
            done += 1
            if progress is not None and done % 64 == 0:
                maybe = progress(done, self.result.addresses)
                if maybe is not None:
                    await maybe

        async def worker() -> None:  # a fixed pool pulls from one iterator: a /12 never holds a million coroutines
            for address in todo:
                if address != self.options.seed:
                    await one(address)

        if self.options.seed:
            await one(self.options.seed)
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        self.result.addresses = done
        await self._follow()
        self.result.probes = self.bucket.sent
        return self.result

    async def _follow(self) -> None:
        """Probe neighbours' management addresses that no probe reached yet, breadth first, inside the ranges."""
        followed = 0
        frontier = [f for f in self.result.found.values() if f.neighbours]
        while frontier and followed < MAX_FOLLOW:
            wanted: list[str] = []
            for found in frontier:
                for n in found.neighbours:
                    addr = n.remote_address
                    if not addr or addr in self.result.found or addr in wanted:
                        continue
                    if in_scope(addr, self.options.networks):
                        wanted.append(addr)
                    elif addr not in self.result.skipped_out_of_scope:
                        self.result.skipped_out_of_scope.append(addr)
            wanted = wanted[: MAX_FOLLOW - followed]
            followed += len(wanted)
            self.result.addresses += len(wanted)
            new = await asyncio.gather(*(self.probe(a) for a in wanted))
            frontier = [f for f in new if f is not None and f.neighbours]

    async def close(self) -> None:
        await self.client.close()


def v3_first(credentials: Sequence[SnmpCredentials]) -> tuple[SnmpCredentials, ...]:
    """The credentials to try, v3 ones first, each group in the order given."""
    return tuple(sorted(credentials, key=lambda c: c.version != "3"))
