"""Live updates across processes (scheduler: queue): writers NOTIFY on PostgreSQL, every serve process LISTENs.

Workers (and each serve's own writer) send `NOTIFY pocketnoc_live` inside every committed batch;
each serve process keeps one LISTEN connection and calls `wake` (its live broker's, server.web.live), which
then reads what changed. Phones connected to any serve process see a worker's result within a moment,
instead of at the broker's slower periodic check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from sqlalchemy import Connection, text

from server.store.status import CheckOutcome, StatusMap, Transition

log = logging.getLogger("pocketnoc.live")
CHANNEL = "pocketnoc_live"


def notify_hook(
    conn: Connection, _transitions: list[Transition], _outcomes: list[CheckOutcome], _status: StatusMap
) -> None:
    """A writer hook: announce the batch; PostgreSQL delivers it at commit, and never for a rolled-back one."""
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"NOTIFY {CHANNEL}"))


class LiveBridge:
    """One LISTEN connection per serve process; reconnects on its own."""

    def __init__(self, conninfo: str, wake: Callable[[], None]) -> None:
        self.conninfo = conninfo
        self.wake = wake
        self.received = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pocketnoc-live-bridge")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _wake(self) -> None:
        self.received += 1
        self.wake()

    async def _run(self) -> None:
        delay = 1.0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    delay = 1.0
                    async for _notice in conn.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("live updates from other processes paused (%s); reconnecting in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
