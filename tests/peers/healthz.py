"""Does a pocketnoc process the tests started answer /healthz yet?

One HTTP client per test process: `httpx.get()` builds a whole client (its TLS context included) on every call,
and the tests poll ten times a second while serve and worker processes start; that was about a minute of CPU in
a run of the suite.
"""

from __future__ import annotations

import functools

import httpx


@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(timeout=2)


def answers(base_url: str) -> bool:
    """True when `base_url`/healthz answers 200 (False while it refuses, times out or answers anything else)."""
    try:
        return _client().get(base_url.rstrip("/") + "/healthz").status_code == 200
    except httpx.HTTPError:
        return False
