"""Who is really calling: X-Forwarded-For and X-Forwarded-Proto count only when a trusted proxy sent them."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_HOPS = 32


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses) as networks; a bad entry raises ValueError."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]  # "[2001:db8::1]:443"
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # "192.0.2.1:5000"
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    """True when `peer` is an address inside one of the trusted proxy networks."""
    address = _ip(peer)
    return address is not None and any(address.version == n.version and address in n for n in trusted)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address: the peer, unless trusted proxies vouch for an address further left in X-Forwarded-For."""
    if not trusted or not forwarded_for or not is_trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",")][-MAX_HOPS:]
    # Walk from the right: each hop we trust may tell us who came before it; the first untrusted one is the client.
    for hop in reversed(hops):
        address = _ip(hop)
        if address is None:
            return peer  # a forged or broken header: do not guess
        if not is_trusted(str(address), trusted):
            return str(address)
    first = _ip(hops[0]) if hops else None
    return str(first) if first is not None else peer


def forwarded_scheme(peer: str, forwarded_proto: str | None, scheme: str, trusted: Sequence[Network]) -> str:
    """http or https as the browser sees it (X-Forwarded-Proto from a trusted proxy wins)."""
    if forwarded_proto and is_trusted(peer, trusted):
        value = forwarded_proto.split(",")[0].strip().lower()
        if value in ("http", "https"):
            return value
    return scheme
