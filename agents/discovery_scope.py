"""What a discovery run may probe (its ranges, checked and capped) and how fast (a token bucket that counts probes)."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
LARGE_PREFIX: Final = 16  # an IPv4 range wider than a /16 (65,536 addresses) needs confirmation
LARGE_ADDRESSES: Final = 2**16
MAX_ADDRESSES: Final = 2**20  # never more than this in one run, confirmed or not
MAX_RANGES: Final = 64
DEFAULT_RATE: Final = 300.0  # probes per second
DEFAULT_BURST: Final = 50
MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")  # IPv4-mapped: a dual-stack socket sends these as IPv4
# Never a device's address: "this network", multicast, reserved and broadcast.
NOT_DEVICES: Final = tuple(
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/128", "ff00::/8")
)


class RangeError(ValueError):
    """A range that cannot be swept: malformed, /0, too wide without confirmation, or too many addresses."""


class NeedsConfirmation(RangeError):
    """A range wider than a /16: the admin must confirm it (confirm_large)."""


def parse_ranges(texts: Sequence[str], confirm_large: bool = False) -> tuple[Network, ...]:
    """Validate CIDR ranges ("192.0.2.0/24", or one address); the first bad one raises RangeError naming it."""
    if len(texts) > MAX_RANGES:
        raise RangeError(f"at most {MAX_RANGES} ranges per run")
    out: list[Network] = []
    total = 0
    for raw in texts:
        text = str(raw).strip()
        try:
            if "." not in text and ":" not in text:  # "167772161" would parse as 10.0.0.1: only the usual notations
                raise ValueError(text)
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            shown = text[:60].encode("unicode_escape").decode("ascii")
            raise RangeError(f"{shown!r} is not a CIDR range (like 192.0.2.0/24) or an address") from None
        if net.prefixlen == 0:
            raise RangeError(f"{text}: a /0 range is the whole Internet; give a range of your own network")
        if net.version == 6 and net.prefixlen < 112:
            raise RangeError(f"{text}: an IPv6 range wider than a /112 cannot be swept; name devices or use a seed")
        if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(MAPPED):  # else its IPv4 checks are bypassed
            v4 = ipaddress.ip_network(f"{ipaddress.IPv4Address(int(net.network_address) & 0xFFFFFFFF)}/{net.prefixlen - 96}")
            raise RangeError(f"{text}: an IPv4-mapped range; write it as IPv4 ({v4})")
        if any(net.overlaps(bad) for bad in NOT_DEVICES if bad.version == net.version):
            raise RangeError(f"{text}: overlaps addresses no device has (0.0.0.0/8, multicast, reserved or broadcast)")
        size = net.num_addresses
        if size > LARGE_ADDRESSES and not confirm_large:
            raise NeedsConfirmation(f"{text} holds {size:,} addresses (more than a /{LARGE_PREFIX}); confirm to sweep it")
        total += size
        if total > MAX_ADDRESSES:
            raise RangeError(f"the ranges hold more than {MAX_ADDRESSES:,} addresses; split the run")
        out.append(net)
    return tuple(out)


def addresses(networks: Sequence[Network]) -> Iterator[str]:
    """Every address to probe, once: hosts of each range (network and broadcast left out of IPv4 ranges up to /30)."""
    seen: set[str] = set()
    for net in networks:
        hosts: Iterator[Address] = iter(net.hosts()) if net.num_addresses > 2 else iter(net)
        for ip in hosts:
            text = str(ip)
            if text not in seen:
                seen.add(text)
                yield text


def in_scope(address: str, networks: Sequence[Network]) -> bool:
    """Whether an address lies inside the run's ranges (the only addresses a run ever probes)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(slots=True)
class TokenBucket:
    """At most `rate` probes a second on average, `burst` at once; `sent` counts every probe taken."""

    rate: float = DEFAULT_RATE
    burst: int = DEFAULT_BURST
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    sent: int = 0
    _tokens: float = field(default=-1.0, repr=False)
    _at: float = field(default=0.0, repr=False)
    _lock: asyncio.Lock | None = field(default=None, repr=False)

    async def take(self) -> None:
        """Wait for a token (the bucket refills at `rate`), then count one probe."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one waiter at a time keeps the order fair and the rate exact
            now = self.clock()
            if self._tokens < 0:
                self._tokens, self._at = float(self.burst), now
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                await self.sleep(wait)
                self._tokens, self._at = 1.0, self.clock()
            self._tokens -= 1
            self.sent += 1
