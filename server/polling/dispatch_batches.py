"""The leader's side of batched queue polling: which worker owns each device, batches per worker, re-routing.

A queue job is a batch: up to BATCH_SIZE checks of one worker's shard that fall due within LOOKAHEAD
seconds, each with its slot and due time (database clock); the worker starts each check at its own due
time and commits the batch's results together. So the queue costs one job per batch, not per check.

Workers are judged every second: one whose heartbeat stopped for three beats, or that has had no
connection to PostgreSQL for two passes (killed), is not live. Its devices go to the others (rendezvous
hashing: only its own devices move), its connections are ended (fencing: its check locks are freed and
late writes fail) and its waiting and running batches are taken back and queued again for the new owners,
for the checks still inside their interval. A result that was committed before is not applied twice: the
run log refuses a second (device, check, slot).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import procrastinate
from procrastinate import jobs as pq_jobs

from server.polling.jobs import CheckJob, PollNow
from server.polling.shards import Weights, owner
from server.runtime import Services
from server.store import shards as store
from server.store.leases import db_now
from server.store.shards import WorkerSeen, worker_queue

log = logging.getLogger("pocketnoc.queue")
TASK = "pocketnoc.check"  # one check, e.g. 'poll now'
BATCH_TASK = "pocketnoc.batch"
RUN_NOW_TIMEOUT = 30.0
# Checks per job: the queue's own cost (defer + fetch + finish, ~3 ms of CPU in pocketnoc and PostgreSQL,
# measured in BENCHMARKS.md) is then a few hundredths of a millisecond per check; larger batches only delay
# the commit of the first results and make a killed worker's retry bigger.
BATCH_SIZE = 100
LOOKAHEAD = 2.0  # seconds of due checks gathered into one batch (at most half an interval)
SHARES_EVERY = 5.0  # how often the shares on the workers page are rewritten when nothing changed
ORPHAN_PASSES = 2  # passes without a connection before a worker counts as killed (not a reconnect after a restart)


@dataclass
class RouterStats:
    """What the router did (shown on the workers page and in /metrics)."""

    batches: int = 0
    checks: int = 0
    rerouted: int = 0  # checks of dead workers' batches queued again for others
    unowned: int = 0  # checks due while their pool had no live worker (not queued: nobody would run them)
    fenced: int = 0


@dataclass
class BatchRouter:
    """Owners of devices per pool, the live workers, and the batches sent to them."""

    svc: Services
    app: procrastinate.App
    stats: RouterStats = field(default_factory=RouterStats)
    pools: dict[str | None, Weights] = field(default_factory=dict)
    live: dict[str, WorkerSeen] = field(default_factory=dict)
    owners: dict[int, tuple[str | None, str | None]] = field(default_factory=dict)  # device -> (pool, owner)
    _orphan: dict[str, int] = field(default_factory=dict)
    _fenced: set[str] = field(default_factory=set)
    _was_connected: set[str] = field(default_factory=set)
    _shares_due: float = 0.0
    _routes_seen: object = None

    def owner_of(self, device_id: int, pool: str | None) -> str | None:
        """The live worker that polls this device now (None: no live worker in its pool)."""
        cached = self.owners.get(device_id)
        if cached is None or cached[0] != pool:  # unknown, or its device changed pools (e.g. its site got workers)
            weights = self.pools.get(pool)
            cached = (pool, owner(device_id, weights.weights) if weights else None)
            self.owners[device_id] = cached
        return cached[1]

    def judge(self, routes: dict[int, str | None], jobs: dict[str, CheckJob]) -> None:
        """Blocking (run in a thread): who is live, fence the dead, shed or regain weight, store the shares."""
        dead_after = self.svc.settings.worker_dead_seconds
        with self.svc.engine.begin() as conn:
            seen = store.running_workers(conn)
            live: dict[str, WorkerSeen] = {}
            for w in seen:
                self._orphan[w.instance] = 0 if w.connected else self._orphan.get(w.instance, 0) + 1
                if w.age > dead_after:
                    if w.instance not in self._fenced:  # cut off: end its sessions so its locks go with them
                        self._fenced.add(w.instance)
                        ended = store.fence_worker(conn, w.instance)
                        self.stats.fenced += 1
                        log.warning("worker %s silent for %.1fs: its %d connections ended, its devices go to others",
                                    w.name, w.age, ended)  # fmt: skip
                    continue
                self._fenced.discard(w.instance)
                if w.connected:
                    self._was_connected.add(w.instance)
                elif self._orphan[w.instance] >= ORPHAN_PASSES or w.instance not in self._was_connected:
                    continue
                live[w.name] = w
            changed = set(live) != set(self.live)
            for pool in {w.site for w in live.values()} | set(self.pools):
                lags = {n: w.lag_p95 for n, w in live.items() if w.site == pool}
                weights = self.pools.setdefault(pool, Weights())
                changed = weights.update(lags) or changed
                if not lags:
                    del self.pools[pool]
            self.live = live
            if changed:
                self.owners.clear()
                log.info("workers live: %s", ", ".join(sorted(live)) or "none")
            if routes is not self._routes_seen:  # the inventory or the sites changed: a device may be in another pool
                self.owners.clear()
                changed, self._routes_seen = True, routes
            if changed or time.monotonic() >= self._shares_due:
                self._shares_due = time.monotonic() + SHARES_EVERY
                store.save_shares(conn, self._shares(routes, jobs), db_now(conn))

    def _shares(self, routes: dict[int, str | None], jobs: dict[str, CheckJob]) -> list[store.WorkerShare]:
        devices: dict[str, set[int]] = {}
        checks: dict[str, int] = {}
        for job in jobs.values():
            name = self.owner_of(job.device_id, routes.get(job.device_id))
            if name is not None:
                devices.setdefault(name, set()).add(job.device_id)
                checks[name] = checks.get(name, 0) + 1
        out: list[store.WorkerShare] = []
        for name, w in self.live.items():
            weights = self.pools.get(w.site)
            out.append({"name": name, "site": w.site, "devices": len(devices.get(name, ())), "checks": checks.get(name, 0),
                        "weight": weights.weights.get(name, 1.0) if weights else 1.0,
                        "behind": bool(weights and weights.behind.get(name))})  # fmt: skip
        return out

    def take_dead(self) -> list[list[Any]]:
        """Blocking: the checks of batches queued for (or run by) workers that are not live; removed from the queue."""
        live_queues = [worker_queue(n) for n in self.live]
        with self.svc.engine.begin() as conn:
            return store.take_orphan_batches(conn, BATCH_TASK, live_queues)

    def batches(self, items: list[tuple[CheckJob, int, float]], routes: dict[int, str | None]) -> list[pq_jobs.Job]:
        """Group due checks (job, slot, due) by owner into queue jobs of at most BATCH_SIZE (none for a pool without
        a live worker: its 'nobody polls' alert says so, and a backlog would only be stale when a worker comes)."""
        groups: dict[str, list[Any]] = {}
        for job, slot, due in items:
            name = self.owner_of(job.device_id, routes.get(job.device_id))
            if name is None:
                self.stats.unowned += 1
                continue
            groups.setdefault(worker_queue(name), []).append([job.device_id, job.check, slot, due])
        out = []
        for queue, checks in groups.items():
            for start in range(0, len(checks), BATCH_SIZE):
                chunk = checks[start : start + BATCH_SIZE]
                out.append(pq_jobs.Job(queue=queue, lock=None, queueing_lock=None, task_name=BATCH_TASK,
                                       task_kwargs={"checks": chunk}))  # fmt: skip
        return out

    async def send(self, jobs: list[pq_jobs.Job]) -> None:
        """Queue batches in one round trip."""
        if jobs:
            await self.app.job_manager.batch_defer_jobs_async(jobs)
            self.stats.batches += len(jobs)
            self.stats.checks += sum(len(cast(list[Any], j.task_kwargs["checks"])) for j in jobs)


async def run_now(app: procrastinate.App, jobs: list[CheckJob], queue: str,
                  states_of: Callable[[list[int]], dict[int, str]]) -> PollNow:  # fmt: skip
    """Queue these checks at once (one job each, on the pool's queue) and wait until they ran, up to RUN_NOW_TIMEOUT
    (a worker waits longer for a check in flight: those running then are `pending`; those no worker took then are
    cancelled, `untaken`)."""
    ids = []
    for job in jobs:
        pjob = pq_jobs.Job(
            queue=queue,
            lock=None,  # the worker waits for a run of the check in flight (CheckLocks)
            queueing_lock=None,
            task_name=TASK,
            priority=10,
            task_kwargs={"device_id": job.device_id, "check": job.check, "due": None, "force": True},
        )
        done = await app.job_manager.defer_job_async(pjob)
        if done.id is not None:
            ids.append(int(done.id))
    deadline = time.monotonic() + RUN_NOW_TIMEOUT
    states: dict[int, str] = {}
    while ids and time.monotonic() < deadline:
        states = await asyncio.to_thread(states_of, ids)
        if not any(s in ("todo", "doing") for s in states.values()):
            break
        await asyncio.sleep(0.2)
    untaken = 0
    for i in ids:  # no worker took it (none running for its site?): it is not left to fire whenever one comes
        if states.get(i) == "todo" and await app.job_manager.cancel_job_by_id_async(i):
            untaken += 1
            states[i] = "cancelled"
    ran = sum(1 for i in ids if states.get(i, "gone") in ("gone", "succeeded"))  # only a success is deleted
    return PollNow(len(jobs), ran, sum(1 for i in ids if states.get(i) in ("todo", "doing")), untaken)
