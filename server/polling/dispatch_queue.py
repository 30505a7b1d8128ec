"""The queue dispatcher (`scheduler: queue`): one leader queues each check once per interval, in batches per worker.

Every serve process runs one; the one holding the "scheduler" lease (a row in PostgreSQL) is the
leader. Each check has interval slots (slot = interval number since the epoch, shifted by the
check's stable spread offset, on the database's clock). The leader gathers the checks falling due in
the next LOOKAHEAD seconds, groups them by the worker that owns their device (rendezvous hashing over
the live workers of the device's pool, dispatch_batches) and queues one Procrastinate job per batch
in that worker's own queue (`worker-NAME`); the worker starts each check at its due time.

- no Procrastinate `lock`: a worker takes a PostgreSQL session lock per check while it polls it
  (store.checklocks.CheckLocks), so a check never runs twice at once on any workers; a slot that
  finds its check still running elsewhere is skipped; a killed worker's locks go with its connection.
- a (device, check, slot) is applied at most once: the run log refuses a second one in the results'
  transaction, so a batch retried after its worker died, or queued again by a new leader, is harmless;
- the leader records up to which due time it has queued everything, and a new leader goes on from there;
- every second the leader judges the workers: a dead one's devices move to the others and its queued
  and running batches are queued again for them (dispatch_batches).

A device of a site (a `site-NAME` tag, once a worker started with `--site NAME` has registered) is
owned by that site's workers only; while its pool has no live worker nothing is queued for it (counted,
and the pool's 'nobody polls' alert fires). 'Poll now' queues one job per check in the pool's queue.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import procrastinate
from procrastinate import jobs as pq_jobs

from server.polling.dispatch_batches import LOOKAHEAD, TASK, BatchRouter, run_now
from server.polling.jobs import CheckJob, PollNow
from server.polling.schedule import phase
from server.runtime import Services
from server.store import leases
from server.store import shards as shard_store
from server.store import workers as store
from server.store.db import conninfo
from server.store.leases import holder_name
from server.store.live_bridge import LiveBridge, notify_hook

log = logging.getLogger("pocketnoc.queue")
DEFAULT_QUEUE = "checks"
LEASE = "scheduler"
TICK = 0.25
MIN_SLEEP = 0.1  # at most 10 wake-ups a second however many checks: deferrals still go in batches
REFRESH_EVERY = 2.0
HOUSEKEEPING_EVERY = 5.0
REAP_EVERY = 1.0


def site_queue(site: str | None) -> str:
    """The Procrastinate queue of a site's workers (or the default queue)."""
    return f"site-{site}" if site else DEFAULT_QUEUE


def make_app(url: str, max_size: int = 4, application_name: str | None = None) -> procrastinate.App:
    """A Procrastinate app on the pocketnoc database (its tables come from our migration 0008)."""
    connector = procrastinate.PsycopgConnector(conninfo=conninfo(url, application_name), min_size=1, max_size=max_size)
    return procrastinate.App(connector=connector)


def slot_of(now: float, offset: float, interval: int) -> int:
    """The interval slot a check is in at `now`."""
    return math.floor((now - offset) / interval)


@dataclass
class QueueStats:
    """What the leader did (shown on the workers page)."""

    deferred: int = 0  # checks queued
    already: int = 0  # slots a previous leader had queued (skipped on taking over)
    errors: int = 0
    reaped: int = 0


class QueueDispatcher:
    """The Dispatcher of scaled-out installs: schedules into PostgreSQL; workers poll."""

    def __init__(self, svc: Services, loader: Callable[[], list[CheckJob]]) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.loader = loader
        if logging.getLogger("procrastinate").level == logging.NOTSET:
            logging.getLogger("procrastinate").setLevel(logging.WARNING)  # it logs every job at INFO
        self.app = make_app(svc.settings.db_url)
        self.holder = holder_name("serve")
        self.bridge = LiveBridge(conninfo(svc.settings.db_url), self._wake_live)
        self.jobs: dict[str, CheckJob] = {}
        self.routes: dict[int, str | None] = {}
        self.known_sites: set[str] = set()
        self.stats = QueueStats()
        self.router = BatchRouter(svc, self.app)
        self.leader = False
        self.leader_since = 0.0
        self._pending: list[CheckJob] | None = None
        self._heap: list[tuple[float, str, int]] = []
        self._gen: dict[str, int] = {}
        self._last_job: dict[str, CheckJob] = {}
        self._became_leader = False
        self._clock = (time.time(), time.monotonic())  # (database now, monotonic then)
        self._valid_until = 0.0
        self._fingerprint: tuple[Any, ...] | None = None
        self._next = {"lease": 0.0, "refresh": 0.0, "house": 0.0, "prune": 0.0, "reap": 0.0}
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()

    # ------------------------------------------------------------ the Dispatcher interface

    def _wake_live(self) -> None:
        """Another process committed: phones connected here hear of it (when any are connected)."""
        if self.svc.live is not None:
            self.svc.live.on_commit([], [])

    def start(self) -> None:
        """Open the queue, start the scheduling loop and the cross-process live updates on the running loop."""
        if self.svc.writer is not None and notify_hook not in self.svc.writer.hooks:
            self.svc.writer.hooks.append(notify_hook)  # e.g. trap alerts reach phones on the other serve processes
        self.bridge.start()
        self._task = asyncio.get_running_loop().create_task(self._main(), name="pocketnoc-queue")

    async def stop(self) -> None:
        """Stop scheduling and hand the lease over at once (workers go on with what is queued)."""
        await self.bridge.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.leader:
            await asyncio.to_thread(self._release)
        self.leader = False

    def sync(self, jobs: list[CheckJob]) -> None:
        """Take the wanted checks; the loop applies them at its next tick (this may run on any thread)."""
        self.jobs = {job.key: job for job in jobs}
        self._pending = list(jobs)
        self.routes = self._load_routes()

    async def run_now(self, device_id: int) -> PollNow:
        """Queue every check of one device at once (on its site's workers) and wait until they ran."""
        jobs = [j for j in self.jobs.values() if j.device_id == device_id]
        try:
            await asyncio.wait_for(self._opened.wait(), 10)
        except TimeoutError:  # the queue cannot be reached
            return PollNow(len(jobs), 0, untaken=len(jobs))
        return await run_now(self.app, jobs, site_queue(self.routes.get(device_id)), self._job_states)

    # ------------------------------------------------------------ the loop

    def now(self) -> float:
        """The database's clock, extrapolated from the last lease round trip."""
        db, mono = self._clock
        return db + (time.monotonic() - mono)

    async def _main(self) -> None:
        async with self.app.open_async():
            self._opened.set()
            while True:
                try:
                    await self._tick()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.stats.errors += 1
                    log.exception("queue scheduling failed; retrying")
                    await asyncio.sleep(1.0)
                await asyncio.sleep(self._until_next())

    def _until_next(self) -> float:
        """Sleep until the next slot is due (at most a tick, at least MIN_SLEEP): jobs are queued on time, not a tick late."""
        if not self.leader or not self._heap:
            return TICK
        return min(TICK, max(MIN_SLEEP, self._heap[0][0] - self.now()))

    async def _tick(self) -> None:
        mono = time.monotonic()
        if mono >= self._next["lease"]:
            self._next["lease"] = mono + self.settings.lease_seconds / 3
            await asyncio.to_thread(self._renew)
            if self._became_leader:
                self._became_leader = False
                self._heap_from_now()
        if self.leader and time.monotonic() > self._valid_until:  # could not renew in time: step down before it expires
            log.warning("scheduler lease not renewed in time; stepping down")
            self.leader = False
        if self.svc.writer is not None:
            self.svc.writer.maintenance_enabled = self.leader
        if mono >= self._next["refresh"]:
            self._next["refresh"] = mono + REFRESH_EVERY
            await asyncio.to_thread(self._refresh)
        if self._pending is not None:
            self._apply(self._pending)
        if not self.leader:
            return
        if mono >= self._next["reap"]:  # who is live (before queueing: a new leader knows its workers first)
            self._next["reap"] = mono + REAP_EVERY
            await self._reap()
        await self._defer_due(self.now())
        if mono >= self._next["house"]:
            self._next["house"] = mono + HOUSEKEEPING_EVERY
            await self._housekeeping()

    def _renew(self) -> None:
        ttl = self.settings.lease_seconds
        try:
            with self.svc.engine.begin() as conn:
                fence = leases.acquire(conn, LEASE, self.holder, ttl)
                self._clock = (leases.db_now(conn), time.monotonic())
        except Exception:
            log.exception("cannot renew the scheduler lease")
            return
        was = self.leader
        self.leader = fence is not None
        if self.leader:
            self._valid_until = time.monotonic() + ttl * 0.8
            if not was:
                self.leader_since = time.monotonic()
                self._became_leader = True
                log.info("this process now schedules the checks (lease fence %s)", fence)
        elif was:
            log.warning("another process took the scheduler lease")

    def _release(self) -> None:
        try:
            with self.svc.engine.begin() as conn:
                leases.release(conn, LEASE, self.holder)
        except Exception:
            log.exception("cannot release the scheduler lease")

    def _load_routes(self) -> dict[int, str | None]:
        with self.svc.reader.connect() as conn:
            self.known_sites = store.known_sites(conn)
            return store.device_routes(conn, self.known_sites)

    def _refresh(self) -> None:
        """Re-read the inventory when another process changed it (devices, host keys, sites)."""
        with self.svc.reader.connect() as conn:
            fingerprint = store.inventory_fingerprint(conn)
        if fingerprint != self._fingerprint:
            # The first pass loads too: the checks given at start-up were read before this fingerprint, and a device
            # added in between would otherwise never be scheduled (until the next change of the inventory).
            first = self._fingerprint is None
            self._fingerprint = fingerprint
            self.sync(self.loader())
            if self.svc.writer is not None:
                self.svc.writer.inventory_changed()  # e.g. the trap receiver's address map
            if not first:
                log.info("inventory changed: %d checks scheduled", len(self.jobs))

    def _apply(self, jobs: list[CheckJob]) -> None:
        self._pending = None
        wanted = {job.key: job for job in jobs}
        for key in [k for k in self._gen if k not in wanted]:
            del self._gen[key]
        now = self.now()
        for key, job in wanted.items():
            gen = self._gen.get(key)
            if gen is not None and self._last_job.get(key) == job:
                continue
            self._gen[key] = (gen or 0) + 1
            self._last_job[key] = job
            offset = phase(job)
            heapq.heappush(self._heap, (offset + slot_of(now, offset, job.interval) * job.interval, key, self._gen[key]))
        self._last_job = {k: v for k, v in self._last_job.items() if k in wanted}

    def _heap_from_now(self) -> None:
        """A new leader goes on where the last one stopped: the current slot of every check it had not queued yet."""
        self._heap, self._gen, self._last_job = [], {}, {}
        with self.svc.reader.connect() as conn:
            until = shard_store.deferred_until(conn)
        self._apply(list(self.jobs.values()))
        for i, (due, key, gen) in enumerate(self._heap):
            job = self.jobs[key]
            if due <= until:
                self._heap[i] = (due + job.interval, key, gen)
                self.stats.already += 1
        heapq.heapify(self._heap)

    async def _defer_due(self, now: float) -> None:
        """Queue, in batches per worker, every check falling due before now + LOOKAHEAD (once the first is due)."""
        if not self._heap or self._heap[0][0] > now:
            return
        items: list[tuple[CheckJob, int, float]] = []
        later: list[tuple[float, str, int]] = []
        while self._heap and self._heap[0][0] <= now + LOOKAHEAD:
            entry = heapq.heappop(self._heap)
            due, key, gen = entry
            job = self.jobs.get(key)
            if job is None or self._gen.get(key) != gen:
                continue
            if due > now + job.interval / 2:  # a short interval: gather less than LOOKAHEAD
                later.append(entry)
                continue
            offset = phase(job)
            slot = max(round((due - offset) / job.interval), slot_of(now, offset, job.interval))  # a late leader skips
            items.append((job, slot, offset + slot * job.interval))
            heapq.heappush(self._heap, (offset + (slot + 1) * job.interval, key, gen))
        for entry in later:
            heapq.heappush(self._heap, entry)
        await self._send(items)

    async def _send(self, items: list[tuple[CheckJob, int, float]]) -> None:
        if not items:
            return
        before = self.router.stats.checks
        try:
            await self.router.send(self.router.batches(items, self.routes))
        except Exception:
            self.stats.errors += 1
            log.exception("queueing %d checks failed", len(items))
            return
        self.stats.deferred += self.router.stats.checks - before
        await asyncio.to_thread(self._mark, max(due for _, _, due in items))

    def _mark(self, until: float) -> None:
        with self.svc.engine.begin() as conn:
            if until > shard_store.deferred_until(conn):
                shard_store.set_deferred_until(conn, until)

    async def _housekeeping(self) -> None:
        """Leader chores: prune dead workers and old rows, raise or clear 'silent' alerts."""
        from server.alerts import worker_health

        manager = self.app.job_manager
        await manager.prune_stalled_workers(self.settings.worker_dead_seconds)
        armed = time.monotonic() - self.leader_since > self.settings.worker_silent_seconds
        await asyncio.to_thread(worker_health.evaluate, self.svc.engine, self.settings.worker_silent_seconds, armed)
        if time.monotonic() >= self._next["prune"]:
            self._next["prune"] = time.monotonic() + 60
            await manager.delete_old_jobs(nb_hours=1, include_failed=True, include_cancelled=True)
            await asyncio.to_thread(self._prune_runs)

    async def _reap(self) -> None:
        """Judge the workers; queue a dead one's batches again for the others; drop its 'poll now' jobs."""
        await asyncio.to_thread(self.router.judge, self.routes, self.jobs)
        now, again = self.now(), []
        for device_id, check, slot, due in await asyncio.to_thread(self.router.take_dead):
            job = self.jobs.get(f"{device_id}:{check}")
            if job is not None and float(due) > now - job.interval:  # older ones: the next slot is queued already
                again.append((job, int(slot), float(due)))
        if again:
            self.router.stats.rerouted += len(again)
            log.info("%d checks of a dead worker's batches queued again for the others", len(again))
            await self._send(again)
        manager = self.app.job_manager
        stall = self.settings.worker_dead_seconds
        ids = {job.id for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stall) if job.task_name == TASK}
        ids.update(await asyncio.to_thread(self._orphans))
        for job_id in ids:
            if job_id is None:
                continue
            try:
                # Kept as failed (pruned with the other old jobs): a 'poll now' waiting on it must not read its row's
                # absence as a success.
                await manager.finish_job_by_id_async(job_id, status=pq_jobs.Status.FAILED, delete_job=False)
                self.stats.reaped += 1
                log.info("removed queue job %s of a dead worker", job_id)
            except Exception:
                log.debug("stalled job %s finished meanwhile", job_id)

    def _orphans(self) -> list[int]:
        with self.svc.engine.connect() as conn:
            return store.orphaned_jobs(conn, TASK)

    def _prune_runs(self) -> None:
        with self.svc.engine.begin() as conn:
            store.prune_runs(conn, leases.db_now(conn) - self.settings.run_log_minutes * 60)

    def _job_states(self, ids: list[int]) -> dict[int, str]:
        with self.svc.reader.connect() as conn:
            return store.job_states(conn, ids)

    def figures(self) -> dict[str, Any]:
        """The leader's state for the workers page."""
        return {
            "leader": self.leader,
            "holder": self.holder,
            "checks": len(self.jobs),
            "deferred": self.stats.deferred,
            "batches": self.router.stats.batches,
            "rerouted": self.router.stats.rerouted,
            "unowned": self.router.stats.unowned,
            "live": sorted(self.router.live),
            "fenced": self.router.stats.fenced,
            "already": self.stats.already,
            "errors": self.stats.errors,
            "reaped": self.stats.reaped,
        }
