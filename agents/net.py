"""Network checks: TCP connect here; importing it also registers ping and http (net_ping, net_http)."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from typing import Any

from agents import net_http, net_ping
from agents.base import CollectError, Reading, Sample, Target, Unreachable, register
from agents.net_common import host_of, opt_int, timeout_of

__all__ = ["HttpCollector", "PingCollector", "TcpCollector", "tcp_connect"]

HttpCollector = net_http.HttpCollector
PingCollector = net_ping.PingCollector

_REFUSED = (errno.ECONNREFUSED, errno.ECONNRESET)


async def _connect_once(family: int, sockaddr: Any) -> None:
    """Open one non-blocking TCP connection to sockaddr and close it again."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, sockaddr)
    finally:
        sock.close()


async def tcp_connect(host: str, port: int, limit_s: float) -> tuple[str, float]:
    """Connect to host:port within limit_s, trying each resolved address; return (address, seconds)."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + limit_s
    try:
        async with asyncio.timeout(limit_s):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise Unreachable(f"cannot resolve {host!r} within {limit_s:g} s") from None
    except (OSError, UnicodeError) as exc:
        raise Unreachable(f"cannot resolve {host!r}: {exc}") from None
    failures: list[str] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        address = str(sockaddr[0])
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append(f"{address}: no time left")
            break
        started = time.monotonic()
        try:
            async with asyncio.timeout(remaining):
                await _connect_once(family, sockaddr)
        except TimeoutError:
            failures.append(f"{address}: no answer within {limit_s:g} s (filtered or overloaded)")
        except OSError as exc:
            reason = "connection refused" if exc.errno in _REFUSED else (exc.strerror or str(exc))
            failures.append(f"{address}: {reason}")
        else:
            return address, time.monotonic() - started
    raise Unreachable(f"tcp {host} port {port}: " + "; ".join(failures))


class TcpCollector:
    """Open a TCP connection to address:port (option port overrides Target.port) and time it."""

    kind = "tcp"

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        """Connect once; refused or timed out raises Unreachable with the reason."""
        started = time.monotonic()
        port = opt_int(target.options, "port", target.port, 0, 65535)
        if port == 0:
            raise CollectError("tcp check needs a port (1-65535)")
        address, seconds = await tcp_connect(host_of(target), port, timeout_of(target))
        return Reading(
            samples=[Sample("tcp_connect_ms", seconds * 1000.0), Sample("tcp_ok", 1.0)],
            facts={"tcp_address": address, "tcp_port": port},
            duration=time.monotonic() - started,
        )

    async def close(self) -> None:
        """Nothing to release: each collect() opens and closes its own socket."""


register("tcp", TcpCollector)
