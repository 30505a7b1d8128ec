"""Dead-man switch: heartbeats to an outside watcher while monitoring works, and 'silent since' for the web app.

"Monitoring works" means the poller keeps committing results: the newest `last_polled` of enabled devices is
younger than `silent_after_seconds`. When it is not, no heartbeat goes out (so the outside watcher raises the alarm)
and pages can say "monitoring has been silent since HH:MM" instead of looking like a quiet night.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, tzinfo
from typing import Any, TypedDict
from urllib.parse import urlsplit

import httpx

from agents.safety import UnsafeTarget, parse_target
from server.notify import http
from server.notify.channels import checked_host
from server.notify.config import NotifyConfig
from server.store import overview
from server.store.db import Connection, Engine
from server.store.jsontypes import JsonValue
from server.store.notify_targets import meta_get, meta_put

log = logging.getLogger("pocketnoc.notify")
META_KEY = "deadman_heartbeat"


def silent_since(conn: Connection, now: float, silent_after: float, started: float | None = None) -> float | None:
    """Since when monitoring has written nothing (None while it works or there is nothing to monitor)."""
    last, count = overview.last_update(conn)
    if count == 0:
        return None
    reference = last if last is not None else started
    if reference is None or now - reference <= silent_after:
        return None
    return reference


class MonitoringStatus(TypedDict):
    """The dead-man state, as the status API and pages show it."""

    last_update: float | None
    devices: int
    silent_since: float | None
    silent_after_seconds: float
    heartbeat_url_set: bool
    heartbeat: JsonValue


def status(conn: Connection, config: NotifyConfig, now: float, started: float | None = None) -> MonitoringStatus:
    """What the status API and pages show."""
    last, count = overview.last_update(conn)
    beat = meta_get(conn, META_KEY)
    return {
        "last_update": last,
        "devices": count,
        "silent_since": silent_since(conn, now, config.deadman.silent_after_seconds, started),
        "silent_after_seconds": config.deadman.silent_after_seconds,
        "heartbeat_url_set": bool(config.deadman.url),
        "heartbeat": json.loads(beat) if beat else None,
    }


def check_url(url: str, allow_unsafe: bool) -> None:
    """Refuse non-http(s) and link-local/metadata heartbeat URLs (UnsafeTarget)."""
    target = parse_target(url)
    if target.ip is not None and not allow_unsafe:
        from agents.safety import check_address

        check_address(target.ip)


class Monitor:
    """Sends the heartbeat every interval_seconds while monitoring works."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.started = time.time()
        self.next_at = 0.0
        self.sent = 0

    async def tick(self, config: NotifyConfig) -> None:
        """Called by the worker on every pass; does something only when a heartbeat is due."""
        dm = config.deadman
        now = time.time()
        if not dm.url or now < self.next_at:
            return
        self.next_at = now + dm.interval_seconds
        silent = await asyncio.to_thread(self._silent, dm.silent_after_seconds)
        if silent is not None:
            await asyncio.to_thread(self._remember, {"at": now, "ok": False, "status": "withheld",
                                                     "detail": f"monitoring silent since {silent:.0f}"})
            return
        result = await self.beat(dm.url, dm.allow_unsafe, config.delivery.timeout_seconds)
        self.sent += 1 if result["ok"] else 0
        await asyncio.to_thread(self._remember, result)

    async def beat(self, url: str, allow_unsafe: bool, time_limit: float) -> dict[str, Any]:
        """One heartbeat GET; the result as stored."""
        now = time.time()
        try:
            check_url(url, allow_unsafe)
        except UnsafeTarget as exc:
            return {"at": now, "ok": False, "status": "refused", "detail": str(exc)[:300]}
        parts = urlsplit(url)
        refused = await checked_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), allow_unsafe)
        if refused is not None:
            return {"at": now, "ok": False, "status": refused.status, "detail": refused.detail}
        try:
            response = await http.client().get(url, timeout=time_limit)
        except httpx.HTTPError as exc:
            return {"at": now, "ok": False, "status": "connect", "detail": str(exc)[:300] or type(exc).__name__}
        ok = 200 <= response.status_code < 300
        if not ok:
            log.warning("dead-man heartbeat answered HTTP %d", response.status_code)
        return {"at": now, "ok": ok, "status": f"HTTP {response.status_code}", "detail": ""}

    def _silent(self, silent_after: float) -> float | None:
        with self.engine.connect() as conn:
            return silent_since(conn, time.time(), silent_after, self.started)

    def _remember(self, result: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            meta_put(conn, META_KEY, json.dumps(result))


def label(ts: float | None, now: float | None = None, zone: tzinfo = UTC) -> str:
    """'14:05 UTC' (with the date when it is not today; in the reader's zone on pages) for 'silent since' banners."""
    if not ts:
        return ""
    moment = datetime.fromtimestamp(ts, zone)
    today = datetime.fromtimestamp(now if now is not None else time.time(), zone).date()
    return moment.strftime("%H:%M %Z") if moment.date() == today else moment.strftime("%Y-%m-%d %H:%M %Z")
