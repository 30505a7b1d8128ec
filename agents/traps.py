"""SNMP trap and inform receiver (v1, v2c, v3) on asyncio UDP, rate limited and hardened against hostile input.

v1/v2c notifications are decoded by our own strict BER reader (pysnmp's engine costs ~1.6 ms each, ours ~0.03);
v3 goes through pysnmp's engine and NotificationReceiver, which authenticate, decrypt, answer engine-ID
discovery and ACK informs. Not a collector: nothing is registered in agents.base.REGISTRY.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from pysnmp.carrier.asyncio.dgram import udp, udp6

from agents.base import SnmpCredentials
from agents.ber import BerError
from agents.snmp_transport import udp_socket
from agents.traps_ber import INFORM, V1, V2C, V3, decode_notification, inform_response, message_version, v3_header
from agents.traps_model import (
    SNMP_TRAP_ADDRESS,
    SNMP_TRAP_ENTERPRISE,
    WELL_KNOWN_TRAPS,
    Trap,
    TrapVersion,
    split_v2,
    trap_name,
    v1_trap_oid,
)
from agents.traps_v3 import AUTH, MALFORMED, V3Engine, V3Notification, prepare_users

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "WELL_KNOWN_TRAPS", "TokenBuckets", "Trap", "TrapCounters", "TrapReceiver"]

log = logging.getLogger(__name__)

DEFAULT_HOST: Final = "0.0.0.0"  # noqa: S104 - a trap receiver listens on every interface by default
DEFAULT_PORT: Final = 162
# A v3 datagram costs this many global tokens: pysnmp's USM path takes ~2.2 ms, our v2c path ~0.03 ms.
V3_COST = 20.0
# Informs seen recently, so a retransmission (our ACK was lost) is ACKed again but delivered once.
INFORM_MEMORY_SECONDS = 60.0
INFORM_MEMORY_MAX = 8192
MAX_SOURCES = 65_536
# Log the 1st, then every Nth repeat of a recurring problem (callback failures, drops).
LOG_EVERY = 1000


class TokenBuckets:
    """Token buckets keyed by source (rate per second, up to burst); full, idle buckets are forgotten."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_SOURCES) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_keys = max_keys
        self._state: dict[Hashable, list[float]] = {}

    def take(self, key: Hashable, now: float, cost: float = 1.0) -> bool:
        """Spend cost tokens from key's bucket; False when it has too few (a rate <= 0 never limits)."""
        if self.rate <= 0:
            return True
        state = self._state.get(key)
        if state is None:
            if len(self._state) >= self.max_keys:
                self._prune(now)
            state = self._state[key] = [self.burst, now]
        tokens = min(self.burst, state[0] + (now - state[1]) * self.rate)
        state[1] = now
        if tokens < cost:
            state[0] = tokens
            return False
        state[0] = tokens - cost
        return True

    def _prune(self, now: float) -> None:
        refill = self.burst / self.rate
        self._state = {k: v for k, v in self._state.items() if now - v[1] < refill}
        if len(self._state) >= self.max_keys:  # a spoofed-source flood: every bucket is fresh, start over
            self._state.clear()

    def __len__(self) -> int:
        return len(self._state)


@dataclass(slots=True)
class TrapCounters:
    """What a receiver counted since it was made (exported on /metrics)."""

    received: int = 0
    accepted: int = 0
    dropped_rate: int = 0  # over the per-source or the global rate
    dropped_malformed: int = 0
    dropped_auth: int = 0  # unknown community or v3 user, failed v3 authentication or decryption
    duplicates: int = 0  # inform retransmissions: ACKed again, delivered once
    callback_errors: int = 0


class _Protocol:
    """Routes every datagram to the receiver before pysnmp sees it (pysnmp only gets v3 ones)."""

    receiver: TrapReceiver
    closed: asyncio.Future[None]

    def datagram_received(self, datagram: bytes, address: Any) -> None:
        self.receiver._datagram(self, datagram, address)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        log.debug("trap socket error: %s", exc)


class _Udp4(_Protocol, udp.UdpAsyncioTransport):  # type: ignore[misc]
    pass


class _Udp6(_Protocol, udp6.Udp6AsyncioTransport):  # type: ignore[misc]
    pass


def _source(address: Any) -> tuple[str, int]:
    host = str(address[0])
    if host.startswith("::ffff:") and "." in host:  # a v4 client on a dual-stack socket
        host = host[7:]
    return host, int(address[1])


class TrapReceiver:
    """Receives SNMP notifications on host:port and calls on_trap(Trap) on the event loop for each one accepted.

    on_trap must not block. What it counts is in `counts` (TrapCounters).
    """

    def __init__(
        self,
        host: str,
        port: int,
        communities: Sequence[str],
        v3_users: Sequence[SnmpCredentials],
        on_trap: Callable[[Trap], None],
        *,
        max_varbinds: int = 128,
        max_value_bytes: int = 4096,
        rate_per_source: float = 100.0,
        burst_per_source: float | None = None,
        global_rate: float = 2000.0,
        global_burst: float | None = None,
        engine_id: bytes | None = None,
    ) -> None:
        if max_varbinds < 2 or max_value_bytes < 1:
            raise ValueError("max_varbinds must be >= 2 and max_value_bytes >= 1")
        if engine_id is not None and not 5 <= len(engine_id) <= 32:
            raise ValueError("an SNMP engine ID is 5 to 32 bytes")
        self.host = host
        self._requested_port = port
        self._communities = {c.encode(): c for c in communities}
        self._v3_users = list(v3_users)
        self._on_trap = on_trap
        self.max_varbinds = max_varbinds
        self.max_value_bytes = max_value_bytes
        self._per_source = TokenBuckets(rate_per_source, burst_per_source or 2 * rate_per_source)
        self._global = TokenBuckets(global_rate, global_burst or 2 * global_rate, max_keys=1)
        self._engine_id = engine_id
        self._v3: V3Engine | None = None
        self._transport: Any = None
        self._informs: OrderedDict[tuple[str, int, str, int], float] = OrderedDict()
        self.port = port
        self.counts = TrapCounters()
        self._bugs = 0

    @property
    def engine_id(self) -> str | None:
        """Our SNMPv3 engine ID as hex (what v3 inform senders discover), None without v3 users or before start."""
        return self._v3.engine_id.hex() if self._v3 is not None else None

    def counters(self) -> dict[str, int]:
        """All counters, e.g. for /metrics."""
        return {**asdict(self.counts), "v3_engines_learned": self._v3.learned if self._v3 is not None else 0}

    async def start(self) -> None:
        """Bind the socket and start receiving; OSError if the port is taken, ValueError for a bad v3 user."""
        if self._transport is not None:
            return
        v6 = ":" in self.host
        sock = udp_socket(socket.AF_INET6 if v6 else socket.AF_INET)
        try:
            sock.bind((self.host, self._requested_port))
            if self._v3_users:
                users = await asyncio.to_thread(prepare_users, self._v3_users)  # pass-phrase hashing is CPU-heavy
                self._v3 = V3Engine(users, self._engine_id, self._v3_received, self.max_varbinds, self.max_value_bytes)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        loop = asyncio.get_running_loop()
        transport = (_Udp6 if v6 else _Udp4)(loop=loop)
        transport.receiver = self
        transport.closed = loop.create_future()
        if self._v3 is not None:
            self._v3.attach(udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME, transport)
        transport.open_server_mode(sock=sock)
        await transport._lport
        self._transport = transport
        log.info("SNMP trap receiver listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        """Stop receiving and close the socket; counters stay readable."""
        transport, self._transport = self._transport, None
        if self._v3 is not None:
            self._v3.close()
            self._v3 = None
        if transport is not None:
            transport.close_transport()
            if transport.transport is not None:
                await asyncio.wait_for(transport.closed, 5)  # the socket is closed once this fires

    async def __aenter__(self) -> TrapReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the datagram path (synchronous, on the event loop) --

    def _datagram(self, transport: Any, datagram: bytes, address: Any) -> None:
        self.counts.received += 1
        source, port = _source(address)
        now = time.monotonic()
        cost = V3_COST if b"\x02\x01\x03" in datagram[:8] else 1.0  # peek at the version for the CPU budget
        if not self._per_source.take(source, now) or not self._global.take(None, now, cost):
            self.counts.dropped_rate += 1
            if self.counts.dropped_rate % LOG_EVERY == 1:
                log.warning("trap rate limit: dropped %d so far (latest from %s)", self.counts.dropped_rate, source)
            return
        try:
            version = message_version(datagram)
            if version in (V1, V2C):
                self._v1v2(transport, datagram, address, source, port)
            elif version == V3:
                self._v3_datagram(transport, datagram, address)
            else:
                self.counts.dropped_malformed += 1
        except BerError:
            self.counts.dropped_malformed += 1
        except Exception:  # a bug of ours must not stop the receiver, nor flood the log
            self.counts.dropped_malformed += 1
            self._bugs += 1
            if self._bugs % LOG_EVERY == 1:
                log.exception("trap from %s could not be processed (%d so far)", source, self._bugs)

    def _v1v2(self, transport: Any, datagram: bytes, address: Any, source: str, port: int) -> None:
        note = decode_notification(datagram, self.max_varbinds + 2, self.max_value_bytes)
        community = self._communities.get(note.community)
        if community is None:
            self.counts.dropped_auth += 1
            return
        if note.version == V1:
            trap_oid: str | None = v1_trap_oid(note.enterprise, note.generic, note.specific)
            uptime, rest = note.uptime, note.varbinds
            extras = [(SNMP_TRAP_ADDRESS, note.agent_address), (SNMP_TRAP_ENTERPRISE, note.enterprise)]
        else:
            trap_oid, uptime, rest = split_v2(note.varbinds)
            extras = []
        inform = note.pdu_tag == INFORM
        if inform:
            transport.transport.sendto(inform_response(datagram, note), address)
            if self._seen_inform(source, port, community, note.request_id):
                return
        version: TrapVersion = "1" if note.version == V1 else "2c"
        self._deliver(source, port, version, community, trap_oid, uptime, rest, extras, note.truncated, inform)

    def _v3_datagram(self, transport: Any, datagram: bytes, address: Any) -> None:
        if self._v3 is None:
            self.counts.dropped_auth += 1
            return
        verdict = self._v3.check(v3_header(datagram))
        if verdict is None:
            verdict = self._v3.feed(transport, address, datagram)
        if verdict == AUTH:
            self.counts.dropped_auth += 1
        elif verdict == MALFORMED:
            self.counts.dropped_malformed += 1
        # ACCEPTED was delivered by _v3_received; DISCOVERY was answered with a Report by pysnmp.

    def _v3_received(self, note: V3Notification) -> None:
        source, port = _source(note.address)
        if note.inform and self._seen_inform(source, port, note.user, note.request_id):
            return
        trap_oid, uptime, rest = split_v2(note.varbinds)
        self._deliver(source, port, "3", note.user, trap_oid, uptime, rest, [], note.truncated, note.inform)

    def _seen_inform(self, source: str, port: int, who: str, request_id: int) -> bool:
        """True for a retransmitted inform (already delivered); remembers new ones for a while."""
        now = time.monotonic()
        informs = self._informs
        while informs:
            oldest_key, oldest = next(iter(informs.items()))
            if now - oldest < INFORM_MEMORY_SECONDS and len(informs) < INFORM_MEMORY_MAX:
                break
            del informs[oldest_key]
        key = (source, port, who, request_id)
        if key in informs:
            self.counts.duplicates += 1
            return True
        informs[key] = now
        return False

    def _deliver(
        self,
        source: str,
        port: int,
        version: TrapVersion,
        who: str,
        trap_oid: str | None,
        uptime: int | None,
        rest: list[tuple[str, str]],
        extras: list[tuple[str, str]],
        truncated: bool,
        inform: bool,
    ) -> None:
        if not trap_oid:
            self.counts.dropped_malformed += 1  # a v2 notification must name itself in snmpTrapOID.0
            return
        keep = self.max_varbinds - len(extras)
        if len(rest) > keep:
            rest, truncated = rest[:keep], True
        trap = Trap(
            source, port, version, who, trap_oid, uptime, tuple(rest + extras), time.time(),
            trap_name(trap_oid), truncated, inform,
        )  # fmt: skip
        self.counts.accepted += 1
        try:
            self._on_trap(trap)
        except Exception:
            self.counts.callback_errors += 1
            if self.counts.callback_errors % LOG_EVERY == 1:
                log.exception("on_trap failed (%d failures so far)", self.counts.callback_errors)
