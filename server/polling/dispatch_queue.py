"""The queue dispatcher (`scheduler: queue`): one leader defers each check once per interval into Procrastinate.

Every serve process runs one; the one holding the "scheduler" lease (a row in PostgreSQL) is the
leader. For each check it defers one Procrastinate job per interval slot (slot = interval number
since the epoch, shifted by the check's stable spread offset, on the database's clock):

- `defer_periodic_job(periodic_id=check@interval, defer_timestamp=slot)` is unique in the database,
  so a slot is queued at most once even if two processes both believe they lead;
- `queueing_lock=check` refuses a second waiting job of a check, so a backlog coalesces instead of
  piling up (the slot is skipped and counted);
- no Procrastinate `lock`: its fetch query then checks every waiting job's lock, which costs O(queue)
  per fetch and made a saturated queue collapse (measured). Instead a worker takes a PostgreSQL
  session lock per check while it polls it (store.checklocks.CheckLocks): a check never runs twice at
  once on any workers; a slot that finds its check still running elsewhere is skipped, as
  in-process; a worker killed mid-poll frees its locks the moment its connection closes.
- every second the leader removes the jobs left in "doing" by dead workers: those with no
  connection to PostgreSQL left (a worker's queue connections carry its instance as
  application_name) and those whose heartbeat stopped (3 heartbeats, e.g. a cut cable).

Jobs go to the queue of the device's site (a `site-NAME` tag, once a worker started with
`--site NAME` has registered) or to the default queue. `pocketnoc worker` processes run them.
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
from procrastinate import exceptions as pq_exceptions
from procrastinate import jobs as pq_jobs

from server.polling.dispatch import spread_offset
from server.polling.jobs import CheckJob
from server.runtime import Services
from server.store import leases
from server.store import workers as store
from server.store.db import conninfo
from server.store.leases import holder_name
from server.store.live_bridge import LiveBridge, notify_hook

log = logging.getLogger("pocketnoc.queue")
TASK = "pocketnoc.check"
DEFAULT_QUEUE = "checks"
LEASE = "scheduler"
TICK = 0.25
MIN_SLEEP = 0.1  # at most 10 wake-ups a second however many checks: deferrals still go in batches
REFRESH_EVERY = 2.0
HOUSEKEEPING_EVERY = 5.0
REAP_EVERY = 1.0
DEFER_CONCURRENCY = 8
RUN_NOW_TIMEOUT = 30.0


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

    deferred: int = 0
    already: int = 0  # the slot was queued by another leader
    coalesced: int = 0  # the previous job still waited: this slot skipped
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

    async def run_now(self, device_id: int) -> int:
        """Queue every check of one device at once (on its site's workers) and wait until they ran."""
        try:
            await asyncio.wait_for(self._opened.wait(), 10)
        except TimeoutError:
            return 0
        ids = []
        for job in [j for j in self.jobs.values() if j.device_id == device_id]:
            pjob = pq_jobs.Job(
                queue=site_queue(self.routes.get(job.device_id)),
                lock=None,  # the worker waits for a run of the check in flight (CheckLocks)
                queueing_lock=None,
                task_name=TASK,
                priority=10,
                task_kwargs={"device_id": job.device_id, "check": job.check, "due": None, "force": True},
            )
            done = await self.app.job_manager.defer_job_async(pjob)
            if done.id is not None:
                ids.append(int(done.id))
        deadline = time.monotonic() + RUN_NOW_TIMEOUT
        states: dict[int, str] = {}
        while ids and time.monotonic() < deadline:
            states = await asyncio.to_thread(self._job_states, ids)
            if not any(s in ("todo", "doing") for s in states.values()):
                break
            await asyncio.sleep(0.2)
        return sum(1 for i in ids if states.get(i, "gone") in ("gone", "succeeded"))

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
        await self._defer_due(self.now())
        if mono >= self._next["reap"]:  # a dead worker's jobs: not "doing" for long
            self._next["reap"] = mono + REAP_EVERY
            await self._reap()
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
            changed = self._fingerprint is not None
            self._fingerprint = fingerprint
            if changed:
                self.sync(self.loader())
                if self.svc.writer is not None:
                    self.svc.writer.inventory_changed()  # e.g. the trap receiver's address map
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
            offset = spread_offset(key, job.interval)
            heapq.heappush(self._heap, (offset + slot_of(now, offset, job.interval) * job.interval, key, self._gen[key]))
        self._last_job = {k: v for k, v in self._last_job.items() if k in wanted}

    def _heap_from_now(self) -> None:
        """A new leader covers the current slot of every check (already-queued slots are refused by the database)."""
        self._heap, self._gen, self._last_job = [], {}, {}
        self._apply(list(self.jobs.values()))

    async def _defer_due(self, now: float) -> None:
        batch: list[tuple[CheckJob, int]] = []
        while self._heap and self._heap[0][0] <= now:
            _due, key, gen = heapq.heappop(self._heap)
            job = self.jobs.get(key)
            if job is None or self._gen.get(key) != gen:
                continue
            offset = spread_offset(key, job.interval)
            slot = slot_of(now, offset, job.interval)  # a late leader skips to the current slot
            batch.append((job, slot))
            heapq.heappush(self._heap, (offset + (slot + 1) * job.interval, key, gen))
        for start in range(0, len(batch), DEFER_CONCURRENCY):
            await asyncio.gather(*(self._defer(job, slot) for job, slot in batch[start : start + DEFER_CONCURRENCY]))

    async def _defer(self, job: CheckJob, slot: int) -> None:
        offset = spread_offset(job.key, job.interval)
        pjob = pq_jobs.Job(
            queue=site_queue(self.routes.get(job.device_id)),
            lock=None,
            queueing_lock=job.key,
            task_name=TASK,
            task_kwargs={
                "device_id": job.device_id,
                "check": job.check,
                "due": offset + slot * job.interval,
                "timestamp": slot,
            },
        )
        try:
            found = await self.app.job_manager.defer_periodic_job(
                pjob, periodic_id=f"{job.key}@{job.interval}", defer_timestamp=slot
            )
        except pq_exceptions.AlreadyEnqueued:
            self.stats.coalesced += 1
            return
        except Exception:
            self.stats.errors += 1
            log.exception("queueing %s %s failed", job.device, job.check)
            return
        if found is None:
            self.stats.already += 1
        else:
            self.stats.deferred += 1

    async def _housekeeping(self) -> None:
        """Leader chores: prune dead workers and old rows, raise or clear 'silent' alerts."""
        from server.alerts import worker_health

        manager = self.app.job_manager
        await manager.prune_stalled_workers(3 * self.settings.worker_heartbeat_seconds)
        armed = time.monotonic() - self.leader_since > self.settings.worker_silent_seconds
        await asyncio.to_thread(worker_health.evaluate, self.svc.engine, self.settings.worker_silent_seconds, armed)
        if time.monotonic() >= self._next["prune"]:
            self._next["prune"] = time.monotonic() + 60
            await manager.delete_old_jobs(nb_hours=1, include_failed=True, include_cancelled=True)
            await asyncio.to_thread(self._prune_runs)

    async def _reap(self) -> None:
        """Drop the jobs in "doing" of dead workers: no connection left (killed), or no heartbeat for 3 beats."""
        manager = self.app.job_manager
        stall = 3 * self.settings.worker_heartbeat_seconds
        ids = {job.id for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stall) if job.task_name == TASK}
        ids.update(await asyncio.to_thread(self._orphans))
        for job_id in ids:
            if job_id is None:
                continue
            try:
                await manager.finish_job_by_id_async(job_id, status=pq_jobs.Status.FAILED, delete_job=True)
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
            "coalesced": self.stats.coalesced,
            "already": self.stats.already,
            "errors": self.stats.errors,
            "reaped": self.stats.reaped,
        }
