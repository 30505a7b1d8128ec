"""Scheduled discovery re-runs inside the server, and what a restart does to runs it interrupted.

With several serve processes on one PostgreSQL database only the holder of the `discovery` lease starts scheduled
re-runs, and each due run is taken off the schedule by one conditional UPDATE in the transaction that checks the
lease's fence: a process paused past its lease, or racing another, never starts the same re-run twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from server.runtime import Services
from server.services import discovery
from server.store import discovery as store
from server.store import leases

log = logging.getLogger(__name__)
CHECK_EVERY = 60.0
LEASE = "discovery"
LEASE_SECONDS = CHECK_EVERY * 2.5  # renewed every check; a crashed leader's successor starts re-runs within ~3 minutes
_LOOPS: dict[int, tuple[asyncio.Task[None], str]] = {}


def install(svc: Services) -> int:
    """At start: runs a stop left running are marked interrupted (their proposals were never stored)."""
    with svc.engine.begin() as conn:
        return store.interrupt_unfinished(conn, time.time())


def _lead(svc: Services, holder: str) -> int | None:
    with svc.engine.begin() as conn:
        return leases.acquire(conn, LEASE, holder, LEASE_SECONDS)


def _claim(svc: Services, holder: str | None, fence: int | None, run_id: int, now: float) -> float | None:
    with svc.engine.begin() as conn:
        if holder is not None and fence is not None and not leases.fenced(conn, LEASE, holder, fence):
            return None
        return store.claim_due(conn, run_id, now)


def rerun_due(svc: Services, run_id: int, now: float, holder: str | None = None, fence: int | None = None) -> int | None:
    """Take one due run off the schedule (under the lease's fence, when given) and record its re-run; the new run's
    id, or None when another process took it first or the lease was lost. If recording fails the schedule is put back
    (tried again at the next check). The caller launches the run. `pocketnoc discover due` (cron) calls this too."""
    next_at = _claim(svc, holder, fence, run_id, now)
    if next_at is None:
        return None
    try:
        return discovery.rerun(svc, None, None, run_id)
    except Exception:
        with svc.engine.begin() as conn:
            store.update_run(conn, run_id, next_at=next_at)
        raise


async def run_due(svc: Services, now: float, holder: str) -> list[int]:
    """As the holder of the discovery lease, start the re-runs that are due; returns the new runs' ids (none while
    another process holds the lease)."""
    fence = await asyncio.to_thread(_lead, svc, holder)
    if fence is None:
        return []
    started = []
    for run_id in await asyncio.to_thread(discovery.due, svc, now):
        new_id = await asyncio.to_thread(rerun_due, svc, run_id, now, holder, fence)
        if new_id is not None:
            discovery.launch(svc, new_id)
            started.append(new_id)
    return started


def release(svc: Services, holder: str) -> None:
    """Give the discovery lease up (a clean stop), so another process starts the re-runs without waiting."""
    with svc.engine.begin() as conn:
        leases.release(conn, LEASE, holder)


async def _loop(
    svc: Services, holder: str, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
) -> None:
    while True:
        try:
            await run_due(svc, clock(), holder)
        except Exception as exc:  # the loop outlives a bad run; the run shows its own error
            log.warning("scheduled discovery failed: %s", type(exc).__name__)
        await sleep(CHECK_EVERY)


def start(
    svc: Services, clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> None:
    """Check for due re-runs every minute while the server polls."""
    if id(svc) not in _LOOPS:
        holder = leases.holder_name("discovery")
        _LOOPS[id(svc)] = (asyncio.get_running_loop().create_task(_loop(svc, holder, clock, sleep)), holder)


async def stop(svc: Services) -> None:
    """Stop the schedule loop, give its lease up and cancel this server's running sweeps."""
    task, holder = _LOOPS.pop(id(svc), (None, None))
    for t in [task, *discovery.running()]:
        if t is not None:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
    if holder is not None:
        try:
            await asyncio.to_thread(release, svc, holder)
        except Exception as exc:  # the lease then simply expires
            log.warning("cannot release the discovery lease: %s", type(exc).__name__)
