"""Outbound target policy: refuse URLs and hosts that would reach metadata services or unsafe schemes.

Used by the http collector (every redirect hop, and again at connect time on the resolved address) and by
anything else that fetches a URL an operator typed in (webhooks). Addresses are checked AFTER DNS
resolution; every resolved address must pass.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_SCHEMES: tuple[str, ...] = ("http", "https")

# Instance-metadata endpoints of the big clouds (AWS/GCP/Azure/OpenStack, AWS ECS, AWS IPv6, Alibaba, Oracle).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
METADATA_NAMES: frozenset[str] = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)

_LINK_LOCAL_V4 = ipaddress.ip_network("169.254.0.0/16")
_LINK_LOCAL_V6 = ipaddress.ip_network("fe80::/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_INT_PART_RE = re.compile(r"^(0[xX][0-9A-Fa-f]*|0[0-7]*|[1-9][0-9]*)$")
_BAD_CHARS_RE = re.compile(r"[\x00-\x20\x7f\\]")
_MAX_INPUT = 4096


class UnsafeTarget(ValueError):
    """The URL or host is refused by policy; str(exc) says why."""


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    """A statically checked target: lower-case scheme (None for a bare host), host and optional port."""

    scheme: str | None
    host: str
    port: int | None
    ip: IPAddress | None


def parse_ipv4_loose(text: str) -> ipaddress.IPv4Address | None:
    """Parse the inet_aton forms (decimal 2852039166, hex 0xA9FEA9FE, octal 0251.0376.0251.0376, a.b.c)."""
    parts = text.split(".")
    if text.endswith(".") and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4 or not all(_INT_PART_RE.match(p) for p in parts):
        return None
    try:
        values = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8 if p[0] == "0" else 10) for p in parts]
    except ValueError:  # a bare "0x"
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = 0
    for v in head:
        number = number << 8 | v
    number = number << (8 * (5 - len(values))) | last
    return ipaddress.IPv4Address(number)


def normalise_ip(text: str) -> IPAddress | None:
    """Return the address a literal denotes (brackets, zone ids and numeric IPv4 forms allowed), else None."""
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    candidate = candidate.replace("%25", "%", 1)  # a URL-encoded IPv6 zone id
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return parse_ipv4_loose(candidate)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """Return an IPv4 address carried inside an IPv6 one (mapped, NAT64, 6to4, IPv4-compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 0xFFFF):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def check_address(address: str | IPAddress, *, allow_private: bool = True, allow_link_local: bool = False) -> None:
    """Raise UnsafeTarget if one resolved address is refused by policy."""
    ip = normalise_ip(address) if isinstance(address, str) else address
    if ip is None:
        raise UnsafeTarget(f"not an IP address: {str(address)[:100]!r}")
    if isinstance(ip, ipaddress.IPv6Address):
        ip = ipaddress.IPv6Address(int(ip))  # drop the zone id: scoped addresses compare unequal
        inner = _embedded_ipv4(ip)
        if inner is not None:
            try:
                check_address(inner, allow_private=allow_private, allow_link_local=allow_link_local)
            except UnsafeTarget as exc:
                raise UnsafeTarget(f"{ip} embeds {inner}: {exc}") from None
    if ip in METADATA_ADDRESSES and not allow_link_local:
        raise UnsafeTarget(f"{ip} is a cloud metadata address")
    if (ip in _LINK_LOCAL_V4 or ip in _LINK_LOCAL_V6) and not allow_link_local:
        raise UnsafeTarget(f"{ip} is link-local (allow_link_local is off)")
    if ip.is_unspecified:
        raise UnsafeTarget(f"{ip} is the unspecified address")
    if ip.is_multicast:
        raise UnsafeTarget(f"{ip} is a multicast address")
    if isinstance(ip, ipaddress.IPv4Address) and (ip.is_reserved or int(ip) >> 24 == 0):
        raise UnsafeTarget(f"{ip} is a reserved address")
    if not allow_private and not ip.is_global and ip not in METADATA_ADDRESSES:
        raise UnsafeTarget(f"{ip} is a private, loopback or otherwise non-public address")


def check_host_name(host: str) -> None:
    """Raise UnsafeTarget for well-known metadata host names."""
    name = host.strip().rstrip(".").lower()
    if name in METADATA_NAMES:
        raise UnsafeTarget(f"{name} is a cloud metadata host name")


def _split_host_port(text: str) -> tuple[str, int | None]:
    """Split a bare 'host', 'host:port', '[v6]:port' or 'v6' string."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UnsafeTarget("unbalanced '[' in host")
        rest = text[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            raise UnsafeTarget("garbage after ']' in host")
        return text[1:end], int(rest[1:]) if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        if not port.isdigit():
            raise UnsafeTarget("port is not a number")
        return host, int(port)
    return text, None


def _looks_like_url(text: str) -> bool:
    """Tell 'scheme:...' from 'host:port' and bare IPv6 literals."""
    match = _SCHEME_RE.match(text)
    if match is None or normalise_ip(text) is not None:
        return False
    return not match.group(2).isdigit()


def _normalise_host(host: str) -> str:
    """Lower-case, strip a trailing dot and IDNA-encode (so fullwidth digits become ASCII ones)."""
    if not host:
        raise UnsafeTarget("empty host")
    if "%" in host and normalise_ip(host) is None:
        raise UnsafeTarget("percent-encoded host")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise UnsafeTarget(f"host is not a valid international name: {exc}") from None
    return host.lower().rstrip(".")


def parse_target(url_or_host: str, *, allowed_schemes: Iterable[str] = DEFAULT_SCHEMES) -> ParsedTarget:
    """Do every check that needs no DNS: scheme, userinfo, odd characters, literal-address normalisation."""
    if not isinstance(url_or_host, str) or not url_or_host.strip():
        raise UnsafeTarget("empty target")
    text = url_or_host.strip()
    if len(text) > _MAX_INPUT:
        raise UnsafeTarget(f"target longer than {_MAX_INPUT} characters")
    if _BAD_CHARS_RE.search(text):
        raise UnsafeTarget("control characters, spaces or backslashes in target")
    schemes = {s.lower() for s in allowed_schemes}
    if _looks_like_url(text):
        scheme = text.split(":", 1)[0].lower()
        if scheme not in schemes:
            raise UnsafeTarget(f"scheme {scheme!r} is not allowed (allowed: {', '.join(sorted(schemes))})")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise UnsafeTarget(f"invalid URL: {exc}") from None
        if not text[len(scheme) + 1 :].startswith("//"):
            raise UnsafeTarget("URL has no '//' authority")
        if "@" in parts.netloc:
            raise UnsafeTarget("user information ('user@') in URLs is refused")
        host = _normalise_host(parts.hostname or "")
        result_scheme: str | None = scheme
    else:
        if "@" in text or "/" in text:
            raise UnsafeTarget("bare host contains '@' or '/'")
        raw_host, port = _split_host_port(text)
        host = _normalise_host(raw_host)
        result_scheme = None
    if port is not None and not 0 < port < 65536:
        raise UnsafeTarget(f"port {port} out of range")
    check_host_name(host)
    ip = normalise_ip(host)
    return ParsedTarget(result_scheme, str(ip) if ip is not None else host, port, ip)


def check_resolved(
    addresses: Iterable[str | IPAddress], *, allow_private: bool = True, allow_link_local: bool = False
) -> list[IPAddress]:
    """Check every resolved address (all must pass) and return them normalised, duplicates removed."""
    result: list[IPAddress] = []
    for address in addresses:
        ip = address if not isinstance(address, str) else normalise_ip(address)
        if ip is None:
            raise UnsafeTarget(f"resolver returned a non-address {str(address)[:100]!r}")
        check_address(ip, allow_private=allow_private, allow_link_local=allow_link_local)
        if ip not in result:
            result.append(ip)
    if not result:
        raise UnsafeTarget("name resolved to no address")
    return result


def check_target(
    url_or_host: str,
    *,
    allow_private: bool = True,
    allow_link_local: bool = False,
    allowed_schemes: Iterable[str] = DEFAULT_SCHEMES,
    resolve: bool = True,
) -> None:
    """Raise UnsafeTarget unless the URL/host and every address it resolves to are allowed (blocking DNS)."""
    parsed = parse_target(url_or_host, allowed_schemes=allowed_schemes)
    if parsed.ip is not None:
        check_address(parsed.ip, allow_private=allow_private, allow_link_local=allow_link_local)
        return
    if not resolve:
        return
    try:
        infos = socket.getaddrinfo(parsed.host, parsed.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"cannot resolve {parsed.host!r}: {exc}") from None
    check_resolved((str(info[4][0]) for info in infos), allow_private=allow_private, allow_link_local=allow_link_local)


async def resolve_checked(host: str, port: int, *, allow_private: bool = True, allow_link_local: bool = False) -> list[IPAddress]:
    """Resolve without blocking the loop and check every address; OSError if resolution fails."""
    check_host_name(host)
    literal = normalise_ip(host)
    if literal is not None:
        return check_resolved([literal], allow_private=allow_private, allow_link_local=allow_link_local)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return check_resolved((str(info[4][0]) for info in infos), allow_private=allow_private, allow_link_local=allow_link_local)


async def check_target_async(
    url_or_host: str,
    *,
    allow_private: bool = True,
    allow_link_local: bool = False,
    allowed_schemes: Iterable[str] = DEFAULT_SCHEMES,
) -> list[IPAddress]:
    """Like check_target, but resolves on the event loop and returns the checked addresses."""
    parsed = parse_target(url_or_host, allowed_schemes=allowed_schemes)
    try:
        return await resolve_checked(
            parsed.host, parsed.port or 0, allow_private=allow_private, allow_link_local=allow_link_local
        )
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget(f"cannot resolve {parsed.host!r}: {exc}") from None
