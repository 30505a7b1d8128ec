"""The delivery worker: an asyncio task that plans, claims with a lease, sends concurrently, and records receipts.

Database work runs in threads; sends are async (httpx) or threads (Apprise, SMTP), so the event loop and the
poller are never blocked. A commit that wrote to the outbox wakes the worker at once; otherwise it polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from server.keys.secretbox import SecretBox, SecretsUnavailable
from server.notify import deadman, deliver, http, planner, probe
from server.notify.config import NotifyConfig
from server.notify.outcome import Outcome
from server.notify.webpush import VapidKeys
from server.store import channel_queue, leases, outbox
from server.store import notify as store
from server.store import notify_targets as targets
from server.store.db import Connection, Engine
from server.store.leases import holder_name
from server.store.notify_targets import ChannelRow

log = logging.getLogger("pocketnoc.notify")
PRUNE_EVERY = 3600.0
SENDER_LEASE = "notify"


class Worker:
    """Runs until stopped; `kick()` may be called from any thread."""

    def __init__(self, engine: Engine, box: SecretBox, config: Callable[[], NotifyConfig], keys: Callable[[], VapidKeys | None],
                 base_url: str | None, monitor: deadman.Monitor | None = None, lease_seconds: float = 15.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock  # what is due, hold-offs, back-offs, probes and receipt stamps go by this (tests advance it)
        # One sender per database (several serve processes on PostgreSQL): the holder of this lease, fenced.
        self.lease_seconds = lease_seconds
        self.holder = holder_name("notify")
        self.fence: int | None = None
        self.box = box
        self.config = config
        self.keys = keys
        self.base_url = base_url
        self.monitor = monitor
        self.sent = 0
        self.failed = 0
        self.loops = 0
        self.last_loop = 0.0
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._sending: dict[int, deliver.Job] = {}  # message id -> job whose send is running (its claim is renewed)
        self._results: list[tuple[deliver.Job, Outcome, float]] = []
        self._stopping = False
        self._last_prune = 0.0
        self._probes: set[asyncio.Task[None]] = set()
        self._probed: dict[int, float] = {}
        self._last_probe_pass = float("-inf")

    def start(self) -> None:
        """Start on the running loop and listen for outbox commits."""
        self._loop = asyncio.get_running_loop()
        outbox.watch(self.engine, self.kick)
        self._task = self._loop.create_task(self._run(), name="pocketnoc-notify")

    def kick(self) -> None:
        """Wake the worker now (thread-safe)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake.set)
            except RuntimeError:  # the loop is shutting down
                pass

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let sends in flight finish (their leases expire otherwise), close the HTTP client."""
        self._stopping = True
        outbox.unwatch(self.engine)
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, grace)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=grace)
        try:
            await self._flush(self.config())
        except Exception:
            log.exception("recording the last results failed (their leases expire and they are retried)")
        if self.fence is not None:
            try:
                await asyncio.to_thread(self._release)  # hand over at once instead of after the lease runs out
            except Exception:
                log.exception("releasing the sender lease failed")
        await http.close()

    async def _run(self) -> None:
        delay = 0.5
        while not self._stopping:
            self._wake.clear()
            try:
                wait = await self._step()
                delay = 0.5
            except Exception:
                log.exception("notification worker pass failed; retrying in %.1fs", delay)
                wait, delay = delay, min(delay * 2, 30.0)
            self.loops += 1
            self.last_loop = time.time()
            if wait > 0 and not self._stopping:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass

    async def _step(self) -> float:
        """One pass; returns how long to sleep unless woken."""
        config = self.config()
        d = config.delivery
        await self._flush(config)  # receipts of sends already made are recorded even by a process that lost the lease
        if self._sending:  # a slow send keeps its message: its claim must not run out and be claimed (sent) again
            await asyncio.to_thread(deliver.renew, self.engine, list(self._sending.values()), d.lease_seconds,
                                    self.clock())
        self.fence = await asyncio.to_thread(self._hold_lease)
        if self.fence is None:  # another process sends; this one stands by and takes over if that one dies
            return min(d.poll_seconds, self.lease_seconds / 3, d.lease_seconds / 4)
        created = await asyncio.to_thread(self._plan, config)
        free = d.concurrency - len(self._inflight)
        claimed: list[deliver.Job] = []
        if free > 0:
            claimed = await asyncio.to_thread(deliver.claim, self.engine, self.box, config, self.base_url, free, self._fenced,
                                              self.clock())
            keys = self.keys() if any(j.sub is not None for j in claimed) else None
            for job in claimed:
                task = asyncio.get_running_loop().create_task(self._deliver(job, config, keys))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
        await self._probe_stalled(config)
        if self.monitor is not None:
            await self.monitor.tick(config)
        if time.monotonic() - self._last_prune > PRUNE_EVERY:
            self._last_prune = time.monotonic()
            await asyncio.to_thread(self._prune, config)
        if created or len(claimed) >= free > 0:
            return 0.0  # more may be waiting
        next_due = await asyncio.to_thread(self._next_due)
        now = self.clock()
        # A due message that was not claimed waits behind an earlier one to its target: poll, don't spin.
        wait = d.poll_seconds if next_due is None or next_due <= now else min(d.poll_seconds, next_due - now)
        # wake in time to renew the sender lease and the claims of sends in flight
        return max(min(wait, self.lease_seconds / 3, d.lease_seconds / 4), 0.01)

    def _hold_lease(self) -> int | None:
        with self.engine.begin() as conn:
            return leases.acquire(conn, SENDER_LEASE, self.holder, self.lease_seconds)

    def _fenced(self, conn: Connection) -> bool:
        """Inside the claim transaction: still the sender? (a paused process that lost the lease claims nothing)"""
        return self.fence is not None and leases.fenced(conn, SENDER_LEASE, self.holder, self.fence)

    def _release(self) -> None:
        with self.engine.begin() as conn:
            leases.release(conn, SENDER_LEASE, self.holder)

    def _plan(self, config: NotifyConfig) -> int:
        with self.engine.begin() as conn:
            return planner.plan(conn, config, self.clock())

    def _next_due(self) -> float | None:
        with self.engine.connect() as conn:
            times = [t for t in (store.next_message_due(conn), store.next_track_due(conn)) if t is not None]
        return min(times) if times else None

    async def _probe_stalled(self, config: NotifyConfig) -> None:
        """Probe channels waiting out a back-off every probe_seconds: one that answers gets its messages at once."""
        now = self.clock()
        every = config.delivery.probe_seconds
        if now - self._last_probe_pass < min(every, 1.0):
            return
        self._last_probe_pass = now
        for row in await asyncio.to_thread(self._stalled, now):
            if now - self._probed.get(row.id, float("-inf")) < every or not probe.worth_probing(row.last_error):
                continue
            self._probed[row.id] = now
            task = asyncio.get_running_loop().create_task(self._probe(row, config.delivery.timeout_seconds))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    def _stalled(self, now: float) -> list[ChannelRow]:
        with self.engine.connect() as conn:
            return channel_queue.stalled(conn, now)

    async def _probe(self, row: ChannelRow, time_limit: float) -> None:
        try:
            url = targets.channel_url(self.box, row)
        except SecretsUnavailable:
            return
        if await probe.reachable(url, bool(row.allow_unsafe), min(time_limit, 5.0)):
            released = await asyncio.to_thread(self._release_channel, int(row.id))
            log.info("notification channel %s answers again: %d waiting messages released", row.name, released)
            self._wake.set()

    def _release_channel(self, channel_id: int) -> int:
        with self.engine.begin() as conn:
            return channel_queue.release(conn, channel_id, self.clock())

    def _prune(self, config: NotifyConfig) -> None:
        with self.engine.begin() as conn:
            store.prune(conn, time.time(), config.delivery.keep_days)

    async def _deliver(self, job: deliver.Job, config: NotifyConfig, keys: VapidKeys | None) -> None:
        started = time.perf_counter()
        self._sending[int(job.row.id)] = job
        try:
            outcome = await deliver.send(job, config, keys)
        finally:
            self._sending.pop(int(job.row.id), None)
        self._results.append((job, outcome, (time.perf_counter() - started) * 1000))
        self._wake.set()  # record it soon: a finished message may unblock the next one to the same target

    async def _flush(self, config: NotifyConfig) -> None:
        """Record finished attempts in one transaction (one per message would contend with the writer)."""
        if not self._results:
            return
        batch, self._results = self._results, []
        try:
            results = await asyncio.to_thread(deliver.record_many, self.engine, batch, config, self.clock())
        except Exception:
            log.exception("recording %d results failed (their leases expire and they are retried)", len(batch))
            return
        for (job, outcome, _ms), result in zip(batch, results, strict=True):
            if result == "ok":
                self.sent += 1
            else:
                self.failed += 1
                log.info("message %s to %s %s: %s %s", job.row.id, job.row.target_type, result, outcome.status,
                         outcome.detail[:200])
