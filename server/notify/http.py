"""One pooled HTTP client per event loop for webhooks, Web Push and heartbeats (creating one costs ~0.2 s)."""

from __future__ import annotations

import asyncio

import httpx

USER_AGENT = "pocketnoc-notify/1"
_CLIENTS: dict[int, httpx.AsyncClient] = {}


def client() -> httpx.AsyncClient:
    """The client of the running loop: no redirects, no proxies from the environment, bounded pool."""
    key = id(asyncio.get_running_loop())
    found = _CLIENTS.get(key)
    if found is None or found.is_closed:
        found = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=15.0,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
        )
        _CLIENTS[key] = found
    return found


async def close() -> None:
    """Close the running loop's client (worker stop)."""
    found = _CLIENTS.pop(id(asyncio.get_running_loop()), None)
    if found is not None:
        await found.aclose()
