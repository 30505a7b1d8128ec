"""A cheap reachability probe of a failing channel: a TCP connection to its host (checked like a send), nothing sent."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

from server.notify.channels import checked_host

# Schemes whose URL names the host that receives the message (Apprise services with a fixed cloud host do not).
PORTS = {"http": 80, "https": 443, "json": 80, "jsons": 443, "xml": 80, "xmls": 443, "form": 80, "forms": 443,
         "ntfy": 80, "ntfys": 443, "gotify": 80, "gotifys": 443, "smtp": 587, "smtps": 465}


def worth_probing(last_error: str | None) -> bool:
    """Did the channel fail for want of a connection? (a service that answers, e.g. 429 or 5xx, is not probed)"""
    error = last_error or ""
    return error.startswith(("connect", "timeout", "DNS")) or (error.startswith("apprise ") and
                                                                 not error.startswith("apprise error="))


def address(url: str) -> tuple[str, int] | None:
    """The host and port a channel URL sends to, when it names them."""
    try:
        parts = urlsplit(url)
        default = PORTS.get(parts.scheme.lower())
        if default is None or not parts.hostname:
            return None
        return parts.hostname, parts.port or default
    except ValueError:
        return None


async def reachable(url: str, allow_unsafe: bool, time_limit: float) -> bool:
    """Does the channel's host accept a connection now? (False when the URL names no host, or policy refuses it)"""
    found = address(url)
    if found is None:
        return False
    host, port = found
    if await checked_host(host, port, allow_unsafe) is not None:
        return False
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), time_limit)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True
