"""`pocketnoc worker`: runs the checks the serve process queues (scheduler: queue), on any machine.

A worker needs only the PostgreSQL URL and the secret key of the install (devices' credentials
are stored encrypted). It polls with the same Poller and stores through its own Writer as the
embedded mode, so alerts are raised the same way; several writers are safe (row locks in the
store). Each check's memory (counters for rates, failure streak) is handed over through the
database, so the next slot may run on any worker. SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field

from procrastinate.exceptions import ConnectorException
from procrastinate.worker import Worker

from server.alerts.writer_hook import Alerting, flap_of
from server.config.settings import Settings
from server.keys.rotation import check_key
from server.keys.secretbox import SecretBox
from server.polling.dispatch_batches import BATCH_TASK, TASK
from server.polling.dispatch_queue import make_app, site_queue
from server.polling.jobs import CheckJob
from server.polling.pipeline import build_pipeline, load_rules
from server.polling.poller import Poller
from server.polling.queue_batch import BatchRunner
from server.polling.queue_worker_state import CURRENT_SLOT, Inventory, RunLog, WorkerFigures
from server.polling.writer import Writer
from server.runtime import Services
from server.store import filemodes
from server.store import workers as store
from server.store.checklocks import CheckLocks, Handoff, Hold, LockLost
from server.store.db import conninfo, make_engine, migrate
from server.store.live_bridge import notify_hook
from server.store.shards import with_app_name, worker_queue
from server.store.space import Storage

log = logging.getLogger("pocketnoc.worker")
FORCED_STORE_WAIT = 20.0  # a 'poll now' result not stored by then fails its job (the one who asked stops at 30 s)


class NotPolled(Exception):
    """A 'poll now' could not poll (its check kept running, was deleted, or failed) or store its result: its job fails."""


@dataclass
class WorkerOptions:
    """What the command line gives a worker."""

    name: str
    site: str | None = None
    concurrency: int = 100
    instance: str = field(default_factory=lambda: secrets.token_hex(8))


class CheckWorker:
    """One worker process: its poller, writer, inventory and the Procrastinate task that runs a check."""

    def __init__(self, settings: Settings, options: WorkerOptions) -> None:
        self.settings = settings
        self.options = options
        app_name = store.worker_app_name(options.instance)  # on every connection: the leader can end them (fencing)
        self.engine = make_engine(with_app_name(settings.db_url, app_name), pool_size=4)  # writer, heartbeat, refreshes
        self.box = SecretBox.from_file(settings.key_file, create=False)  # a worker never invents a key
        self.svc = Services(settings=settings, engine=self.engine, reader=self.engine, box=self.box)
        self.runlog = RunLog(options.name)
        self.figures = WorkerFigures()
        self.inventory = Inventory(self.svc)
        self.clock_offset = 0.0  # database clock minus ours
        self.alive_file = settings.data_dir / f"worker-{options.name}.alive"
        self.worker_id = 0
        self._last_slot: dict[str, int] = {}  # check -> the slot this worker ran last (its memory is then current)
        self.writer: Writer | None = None
        self.poller: Poller | None = None
        self.alerting: Alerting | None = None
        self.queue_worker: Worker | None = None
        self.stopped_by: signal.Signals | None = None  # the signal that ended run(), if one did
        self.app = make_app(settings.db_url, max_size=6, application_name=app_name)
        self.locks = CheckLocks(conninfo(settings.db_url, app_name), keepalive=settings.worker_heartbeat_seconds)
        self._skip_logged: dict[str, float] = {}
        self.app.task(name=TASK)(self.run_check)
        self.batches = BatchRunner(self.inventory, self.locks, self.runlog, self.figures, self.app.connector,
                                   lambda: self.clock_offset, self._last_slot)  # fmt: skip
        self.app.task(name=BATCH_TASK)(self.batches.run)

    def prepare(self) -> None:
        """Blocking start-up: schema, key check, rules, inventory, registration."""
        filemodes.prepare(self.settings.data_dir, self.settings.db_url)
        for problem in filemodes.loose_files(self.settings.data_dir, self.settings.db_url, self.settings.key_file):
            log.warning("%s", problem)
        migrate(self.engine)
        check_key(self.engine, self.box)
        self.alerting = Alerting(load_rules(self.svc), self.settings.down_after_failures, flap_of(self.settings))
        self.inventory.refresh(force=True)
        self.prepare_registration()

    async def run_check(
        self, device_id: int, check: str, due: float | None = None, timestamp: int | None = None, force: bool = False
    ) -> None:
        """The queue task: run one check of one slot (`due` and `timestamp` are on the database's clock).

        A 'poll now' (`force`) that could not poll fails its job (NotPolled), so the one who asked hears it did not run."""
        polled = False
        try:
            if self.poller is not None and self.writer is not None:  # (both are set before any job is taken)
                polled = await self._run_check(device_id, check, due, timestamp, force)
        except Exception:  # a failed job would only be retried late; the next slot comes anyway
            log.exception("check %s of device %s failed in the worker", check, device_id)
        if force and not polled:
            raise NotPolled(f"'poll now' of check {check} of device {device_id} was not polled and stored (see the log above)")

    async def _run_check(self, device_id: int, check: str, due: float | None, timestamp: int | None, force: bool) -> bool:
        key = f"{device_id}:{check}"
        job = self.inventory.jobs.get(key)
        if job is None and (force or self.inventory.miss_allowed()):  # e.g. a device added a moment ago
            await asyncio.to_thread(self.inventory.refresh, True)
            job = self.inventory.jobs.get(key)
        if job is None:  # deleted or disabled since it was queued
            if force:
                log.warning("'poll now' of check %s of device %s: not among this worker's checks (deleted or polling "
                            "off)", check, device_id)  # fmt: skip
            return False
        # Never twice at once: a slot whose check still runs elsewhere is skipped. 'Poll now' waits for that run, and
        # for one more: a slot that came while it ran may take the lock first when it ends (BatchRunner._later).
        session = await self.locks.acquire(key, wait=2 * job.time_limit + 5 if force else 0.0)
        if session is None:
            if force:
                log.warning("'poll now' of check %s of %s: it still ran after %.0fs; not polled again", check,
                            job.device, 2 * job.time_limit + 5)  # fmt: skip
            elif key not in self.locks.held:
                self._note_skip(job.device, check, timestamp)
            return False
        handoff: list[Handoff] = []
        try:
            return await self._run_locked(job, key, session, due, timestamp, force, handoff)
        except LockLost as exc:
            log.warning("check %s of %s (slot %s) cut: %s", check, job.device, timestamp, exc)
            self._last_slot.pop(key, None)  # its memory here is not the last run's any more
            return False
        finally:  # the counters are stored before the lock is freed: the next run, on any worker, finds them
            await self.locks.release(key, session, handoff[0] if handoff else None)

    def _note_skip(self, device: str, check: str, slot: int | None) -> None:
        """Say so once per check per ten minutes (a check slower than its interval skips every other slot)."""
        now = time.monotonic()
        if now - self._skip_logged.get(f"{device}:{check}", -3600.0) >= 600:
            self._skip_logged[f"{device}:{check}"] = now
            log.info("check %s of %s still runs on another worker: slot %s skipped (more are not logged for 10 min)",
                     check, device, slot)  # fmt: skip

    async def _run_locked(
        self,
        job: CheckJob,
        key: str,
        hold: Hold,
        due: float | None,
        timestamp: int | None,
        force: bool,
        handoff: list[Handoff],
    ) -> bool:
        """Run one slot of a check whose lock this worker holds (whether it polled); what the next run needs goes into
        `handoff`."""
        poller, writer = self.poller, self.writer
        if poller is None or writer is None:
            return False
        device_id, check = job.device_id, job.check
        if timestamp is None or self._last_slot.get(key) != timestamp - 1:  # the previous slot ran elsewhere
            state = await store.load_handoff_async(self.app.connector, device_id, check)
            if state:
                poller.import_state(job, state)
        if timestamp is not None:
            self._last_slot[key] = timestamp
        local_due = None if due is None else due - self.clock_offset
        CURRENT_SLOT.set((timestamp, local_due))  # this task's context: the writer sink tags the outcome with it
        async with self.locks.guard(hold):  # its lock session lost: the poll is cut (another worker may run it)
            outcome = await poller.run_check(job, due=local_due, force=force)
        if outcome is None:
            return False
        handoff.append((device_id, check, poller.export_state(job)))
        self.figures.add(outcome.ok, None if local_due is None else max(0.0, outcome.ts - local_due))
        if force and not await asyncio.to_thread(writer.flush, FORCED_STORE_WAIT):  # 'poll now' waits until it is stored
            log.warning("'poll now' of check %s of %s: polled, but not stored after %.0fs", check, job.device,
                        FORCED_STORE_WAIT)  # fmt: skip
            return False
        return True

    def _heartbeat(self) -> None:
        in_flight = self.poller.stats.in_flight if self.poller else 0
        stats = self.figures.snapshot(in_flight)
        if self.queue_worker is not None and self.queue_worker.worker_id is not None:
            stats["queue_worker_id"] = self.queue_worker.worker_id
        before = time.time()
        with self.engine.begin() as conn:
            now = store.heartbeat(conn, self.worker_id, self.options.instance, stats)
        after = time.time()
        if now is None:  # an admin forgot this worker while it ran: register again
            log.warning("this worker's row was removed; registering again")
            self.prepare_registration()
            return
        self.clock_offset = now - (before + after) / 2
        self.alive_file.touch()  # the container health check reads its age

    def prepare_registration(self) -> None:
        """Register (again) under this worker's name."""
        with self.engine.begin() as conn:
            self.worker_id = store.register(
                conn,
                self.options.name,
                self.options.site,
                socket.gethostname(),
                os.getpid(),
                self.options.instance,
                self.options.concurrency,
                stale_after=self.settings.worker_silent_seconds,
            )

    async def _side_loop(self) -> None:
        """Heartbeats and inventory/rule refreshes, until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self._heartbeat)
                if await asyncio.to_thread(self.inventory.refresh) and self.alerting is not None:
                    rules = await asyncio.to_thread(load_rules, self.svc)
                    self.alerting.set_rules(rules)
                    log.info("inventory or rules changed: %d checks known", len(self.inventory.jobs))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heartbeat failed; retrying")
            await asyncio.sleep(self.settings.worker_heartbeat_seconds)

    async def run(self) -> None:
        """Start everything, work until SIGTERM/SIGINT, then stop cleanly."""
        await asyncio.to_thread(self.prepare)
        # The database's disk is the server's, not this host's: a full one is known from the writes (PostgreSQL 53100).
        parts = build_pipeline("worker", self.svc, hooks=[notify_hook], submit=self.runlog.sink,
                               alerting=self.alerting, storage=Storage(None, 0))
        self.writer, self.poller = parts.writer, parts.poller
        self.writer.listeners.append(self.runlog.committed)
        self.writer.claim = self.runlog.claim  # a slot is applied once, whichever worker ran it and however often
        self.writer.listeners.append(self.batches.waiter.committed)
        self.batches.poller, self.batches.writer = self.poller, self.writer
        queue = site_queue(self.options.site)  # the pool's queue: 'poll now' jobs
        hb = self.settings.worker_heartbeat_seconds
        log.info("worker %s polls queue %s (%d checks known)", self.options.name, queue, len(self.inventory.jobs))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        side = asyncio.create_task(self._side_loop(), name="pocketnoc-worker-heartbeat")
        try:
            async with self.app.open_async():
                await self._work(queue, hb)
        finally:
            side.cancel()
            try:
                await side
            except asyncio.CancelledError:
                pass
            if self.poller is not None:
                await self.poller.close()
            await self.locks.close()
            await asyncio.to_thread(self.writer.stop)
            await asyncio.to_thread(self._mark_stopped)
            self.engine.dispose()
            log.info("worker %s stopped", self.options.name)

    async def _work(self, queue: str, hb: float) -> None:
        """Take jobs until stopped. A queue connection cut mid-query (PostgreSQL restarting, a network cut) ends
        Procrastinate's worker loop with an error: this worker starts a new one after a pause (1 s, doubling to 10 s),
        and its batches in flight run again elsewhere (their jobs are retried), instead of the whole process exiting."""
        pause = 1.0
        while self.stopped_by is None:
            self.queue_worker = Worker(
                app=self.app,
                queues=[worker_queue(self.options.name), queue],
                name=self.options.name,
                concurrency=self.options.concurrency,
                delete_jobs="successful",
                listen_notify=True,
                fetch_job_polling_interval=1.0,
                update_heartbeat_interval=hb,
                stalled_worker_timeout=self.settings.worker_dead_seconds,
                shutdown_graceful_timeout=30.0,
                install_signal_handlers=False,
            )
            started = time.monotonic()
            try:
                await self.queue_worker.run()  # type: ignore[no-untyped-call]
                return
            except ConnectorException as exc:  # Procrastinate's wrapper of the database's errors
                if self.stopped_by is not None:
                    return
                why = " ".join(str(exc.__cause__ or exc).split())[:200]  # Procrastinate's own text says only "Database error"
                log.warning("the queue's connection failed (%s): taking jobs again in %.0f s", why, pause)
            await asyncio.sleep(pause)
            pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 10.0)

    def _on_signal(self, sig: signal.Signals) -> None:
        """SIGTERM/SIGINT: finish the checks in flight (up to 30 s), then stop."""
        log.info("%s: stopping after the checks in flight", sig.name)
        self.stopped_by = sig
        if self.queue_worker is not None:
            self.queue_worker.stop()  # type: ignore[no-untyped-call]

    def _mark_stopped(self) -> None:
        with self.engine.begin() as conn:
            store.mark_stopped(conn, self.worker_id, self.options.instance)
