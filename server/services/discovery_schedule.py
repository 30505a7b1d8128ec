"""Scheduled discovery re-runs inside the server, and what a restart does to runs it interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from server.runtime import Services
from server.services import discovery
from server.store import discovery as store

log = logging.getLogger(__name__)
CHECK_EVERY = 60.0
_LOOPS: dict[int, asyncio.Task[None]] = {}


def install(svc: Services) -> int:
    """At start: runs a stop left running are marked interrupted (their proposals were never stored)."""
    with svc.engine.begin() as conn:
        return store.interrupt_unfinished(conn, time.time())


async def run_due(svc: Services, now: float) -> list[int]:
    """Start the re-runs that are due; returns the new runs' ids."""
    started = []
    for run_id in await asyncio.to_thread(discovery.due, svc, now):
        new_id = await asyncio.to_thread(discovery.rerun, svc, None, None, run_id)
        discovery.launch(svc, new_id)
        started.append(new_id)
    return started


async def _loop(svc: Services, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]) -> None:
    while True:
        try:
            await run_due(svc, clock())
        except Exception as exc:  # the loop outlives a bad run; the run shows its own error
            log.warning("scheduled discovery failed: %s", type(exc).__name__)
        await sleep(CHECK_EVERY)


def start(
    svc: Services, clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """Check for due re-runs every minute while the server polls."""
    if id(svc) not in _LOOPS:
        _LOOPS[id(svc)] = asyncio.get_running_loop().create_task(_loop(svc, clock, sleep))


async def stop(svc: Services) -> None:
    """Stop the schedule loop and cancel this server's running sweeps."""
    task = _LOOPS.pop(id(svc), None)
    for t in [task, *discovery.running()]:
        if t is not None:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
