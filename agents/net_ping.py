"""ICMP echo ("ping") collector: unprivileged ICMP datagram sockets where allowed, raw sockets otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from agents.base import CollectError, Reading, Sample, Target, Unreachable, register
from agents.net_common import host_of, opt_float, opt_int, timeout_of

PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"
_PAYLOAD_LEN = 56
_ICMP_FILTER = 1  # Linux SOL_RAW option: bitmask of ICMP types to drop on raw IPv4 sockets
_SOL_RAW = 255
_ICMP6_FILTER = 1  # Linux IPPROTO_ICMPV6 option: 256-bit block mask on raw IPv6 sockets


@dataclass(slots=True)
class _Family:
    """Per-address-family ICMP constants."""

    family: socket.AddressFamily
    proto: int
    echo_request: int
    echo_reply: int


_V4 = _Family(socket.AF_INET, socket.IPPROTO_ICMP, 8, 0)
_V6 = _Family(socket.AF_INET6, socket.IPPROTO_ICMPV6, 128, 129)


@dataclass(slots=True)
class PingResult:
    """Outcome of one ping run: round-trip times of answered probes and the probes sent."""

    address: str
    method: str
    sent: int
    rtts: list[float] = field(default_factory=list)
    last_error: str = ""

    @property
    def loss_pct(self) -> float:
        """Percentage of probes that got no reply in time."""
        return 100.0 * (self.sent - len(self.rtts)) / self.sent if self.sent else 100.0


def _read_group_range() -> str:
    """Return the kernel's unprivileged-ping group range, or '?' if unreadable."""
    try:
        with open(PING_GROUP_RANGE, encoding="ascii") as fh:
            return " ".join(fh.read().split())
    except OSError:
        return "?"


def _permission_help(dgram_error: OSError, raw_error: OSError) -> str:
    """Explain how an admin can allow this process to ping."""
    return (
        f"ICMP ping is not permitted for this process (gid {os.getgid()}; unprivileged ICMP socket: "
        f"{dgram_error.strerror}; raw socket: {raw_error.strerror}). Allow unprivileged ping with "
        f"`sysctl -w net.ipv4.ping_group_range='0 2147483647'` (now '{_read_group_range()}'; covers "
        "IPv4 and IPv6; persist it in /etc/sysctl.d/), or give the service CAP_NET_RAW "
        "(systemd: AmbientCapabilities=CAP_NET_RAW)"
    )


def open_icmp_socket(fam: _Family) -> tuple[socket.socket, bool]:
    """Open a non-blocking ICMP socket: datagram (unprivileged) first, then raw; returns (socket, is_raw)."""
    try:
        sock = socket.socket(fam.family, socket.SOCK_DGRAM, fam.proto)
        raw = False
    except OSError as dgram_error:
        if dgram_error.errno not in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT):
            raise CollectError(f"cannot open an ICMP socket: {dgram_error}") from None
        try:
            sock = socket.socket(fam.family, socket.SOCK_RAW, fam.proto)
            raw = True
        except OSError as raw_error:
            raise CollectError(_permission_help(dgram_error, raw_error)) from None
    sock.setblocking(False)
    if raw:
        with contextlib.suppress(OSError):  # only an optimisation: let the kernel drop other ICMP types
            if fam is _V4:
                drop = 0xFFFFFFFF & ~(1 << fam.echo_reply)
                sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", drop))
            else:
                words = [0xFFFFFFFF] * 8  # host-order u32 words; a set bit blocks that type
                words[fam.echo_reply >> 5] &= ~(1 << (fam.echo_reply & 31)) & 0xFFFFFFFF
                sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))
    return sock, raw


def _checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum (raw IPv4 only; the kernel fills it in every other case)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def build_echo(fam: _Family, ident: int, seq: int, token: bytes, raw: bool) -> bytes:
    """Build an ICMP echo request carrying token in its payload."""
    payload = token + bytes(_PAYLOAD_LEN - len(token))
    header = struct.pack("!BBHHH", fam.echo_request, 0, 0, ident, seq)
    if raw and fam is _V4:
        header = struct.pack("!BBHHH", fam.echo_request, 0, _checksum(header + payload), ident, seq)
    return header + payload


def parse_echo_reply(fam: _Family, data: bytes, ident: int, token: bytes, raw: bool) -> int | None:
    """Return the sequence number if data is a reply to one of our probes, else None."""
    if raw and fam is _V4:
        if len(data) < 20:
            return None
        data = data[(data[0] & 0x0F) * 4 :]  # raw IPv4 sockets deliver the IP header too
    if len(data) < 8 + len(token):
        return None
    kind, _code, _csum, r_ident, seq = struct.unpack("!BBHHH", data[:8])
    if kind != fam.echo_reply or data[8 : 8 + len(token)] != token:
        return None
    if raw and r_ident != ident:  # datagram sockets get their id rewritten by the kernel
        return None
    return int(seq)


async def _resolve(host: str) -> tuple[_Family, Any]:
    """Resolve host to the first usable (family, sockaddr) without blocking the loop."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise Unreachable(f"cannot resolve {host!r}: {exc}") from None
    for family, _type, _proto, _canon, sockaddr in infos:
        if family == socket.AF_INET:
            return _V4, sockaddr
        if family == socket.AF_INET6:
            return _V6, sockaddr
    raise Unreachable(f"{host!r} resolved to no IPv4/IPv6 address")


async def ping(host: str, *, count: int = 3, interval: float = 0.5, wait: float = 2.0) -> PingResult:
    """Send count echo requests interval seconds apart; a reply counts if it arrives within wait seconds."""
    fam, sockaddr = await _resolve(host)
    sock, raw = open_icmp_socket(fam)
    loop = asyncio.get_running_loop()
    result = PingResult(address=str(sockaddr[0]), method="raw" if raw else "dgram", sent=0)
    ident, token = secrets.randbelow(0x10000), secrets.token_bytes(8)
    sent_at: dict[int, float] = {}

    async def receive() -> None:
        while len(result.rtts) < count:
            try:
                data = await loop.sock_recv(sock, 65535)
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                result.last_error = str(exc)
                await asyncio.sleep(0.01)
                continue
            arrived = time.monotonic()
            seq = parse_echo_reply(fam, data, ident, token, raw)
            if seq is not None and seq in sent_at and arrived - sent_at[seq] <= wait:
                result.rtts.append(arrived - sent_at.pop(seq))

    receiver = asyncio.create_task(receive())
    try:
        start = time.monotonic()
        for seq in range(count):
            await asyncio.sleep(max(0.0, start + seq * interval - time.monotonic()))
            sent_at[seq] = time.monotonic()
            result.sent += 1
            try:
                await loop.sock_sendto(sock, build_echo(fam, ident, seq, token, raw), sockaddr)
            except OSError as exc:  # no route, network down: the probe is lost
                result.last_error = str(exc)
                sent_at.pop(seq, None)
        last_deadline = start + (count - 1) * interval + wait
        if sent_at:  # some probe is still unanswered (failed sends are not waited for)
            await asyncio.wait({receiver}, timeout=max(0.0, last_deadline - time.monotonic()))
    finally:
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
        sock.close()
    return result


class PingCollector:
    """Ping a target: options count (3), interval (0.5 s), timeout (per probe, Target.timeout)."""

    kind = "ping"

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        """Ping the target and report loss and round-trip times; all probes lost raises Unreachable."""
        started = time.monotonic()
        host = host_of(target)
        result = await ping(
            host,
            count=opt_int(target.options, "count", 3, 1, 100),
            interval=opt_float(target.options, "interval", 0.5, 0.01, 60.0),
            wait=timeout_of(target),
        )
        if not result.rtts:
            reason = f"; last error: {result.last_error}" if result.last_error else ""
            raise Unreachable(f"ping {host} ({result.address}): 100% loss, {result.sent}/{result.sent} probes lost{reason}")
        rtts_ms = [r * 1000.0 for r in result.rtts]
        samples = [
            Sample("ping_loss_pct", result.loss_pct),
            Sample("ping_rtt_ms", sum(rtts_ms) / len(rtts_ms)),
            Sample("ping_rtt_min_ms", min(rtts_ms)),
            Sample("ping_rtt_max_ms", max(rtts_ms)),
        ]
        facts: dict[str, Any] = {"ping_address": result.address, "ping_method": result.method}
        return Reading(samples=samples, facts=facts, duration=time.monotonic() - started)

    async def close(self) -> None:
        """Nothing to release: each collect() opens and closes its own socket."""


register("ping", PingCollector)
