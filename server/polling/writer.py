"""The one writer: batches check outcomes into transactions on its own thread, plus rollup/retention."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable

from agents.traps import Trap
from server.alerts.traps import AddressMap, apply_traps, expire_traps
from server.config.settings import Settings
from server.store import accounts, sessions
from server.store.db import Connection, Engine
from server.store.metrics import SeriesCache, expire, rollup, write_samples
from server.store.space import Storage, is_full_error
from server.store.status import CheckOutcome, Hook, SampleRow, Transition, apply_outcomes

log = logging.getLogger("pocketnoc.writer")
# Outcomes in one transaction at most. A batch costs ~1-5 ms of CPU per outcome and holds SQLite's write lock and
# (mostly) the GIL meanwhile: 250 keeps a commit under about a second even when the writer has fallen behind,
# instead of one long transaction that starves the event loop and every other writer (e.g. the notification worker).
MAX_BATCH = 250
# Outcomes queued or being committed before pollers are asked to wait (`has_room`): at ~40 KB an SNMP
# outcome, a writer that falls behind costs ~20 MB, not a backlog that grows until memory runs out.
# 500 is ~6 s of polling at 5,000 devices a minute, twelve times the default batch window.
MAX_BACKLOG = 500
MAINTENANCE_EVERY = 300.0
TRAP_BATCH_SECONDS = 0.02
# Samples kept in memory while the disk is full (~100 bytes each: ~200 MB); past it the oldest are dropped and counted.
MAX_HELD_SAMPLES = 2_000_000
FULL_RETRY_SECONDS = 5.0  # while the disk is full, a batch that cannot be stored even without samples is retried this often

Listener = Callable[[list[Transition], list[CheckOutcome]], None]


def short_error(exc: BaseException) -> str:
    """The driver's own one-line message (never the SQL or its parameters: /healthz shows it to anyone)."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).splitlines()
    return f"{type(orig).__name__}: {(lines[0] if lines else '')[:200]}"


class Writer:
    """Single consumer of outcomes; commits in batches; a failed commit is retried, never dropped."""

    def __init__(self, engine: Engine, settings: Settings, hooks: list[Hook] | None = None,
                 storage: Storage | None = None) -> None:
        self.engine = engine
        self.storage = storage
        self.held: list[SampleRow] = []  # samples not written while the disk is full, oldest first
        self.held_dropped = 0
        self.last_error: str | None = None
        self.settings = settings
        self.hooks: list[Hook] = list(hooks or [])
        self.listeners: list[Listener] = []
        # Queue workers: in the batch's transaction, before anything is applied, keep only the outcomes not applied yet.
        self.claim: Callable[[Connection, list[CheckOutcome]], list[CheckOutcome]] | None = None
        self.cache = SeriesCache()
        self.addresses = AddressMap()
        self._queue: queue.Queue[CheckOutcome | Trap | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._last_maintenance = time.monotonic()
        # Rollup/retention runs in one process per database: queue workers turn it off, serve processes follow the leader.
        self.maintenance_enabled = True
        self.batches = 0
        self.rows = 0
        self.errors = 0
        self.max_backlog = MAX_BACKLOG
        self.batch_seconds: deque[float] = deque(maxlen=1000)  # how long recent commits took (/metrics)

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pocketnoc-writer", daemon=True)
            self._thread.start()

    def submit(self, outcome: CheckOutcome | Trap) -> None:
        """Queue one outcome or trap (thread-safe, never blocks)."""
        with self._lock:
            self._pending += 1
        self._queue.put(outcome)

    @property
    def backlog(self) -> int:
        """Outcomes and traps submitted but not committed yet."""
        return self._pending

    def has_room(self) -> bool:
        """False while the backlog is at its bound: pollers then wait before starting more checks (nothing is dropped)."""
        return self._pending < self.max_backlog

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything submitted so far is committed."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then end the thread."""
        if self._thread is None:
            return
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def forget_device(self, device_id: int) -> None:
        """Drop cached series ids of a deleted device."""
        self.cache.forget_device(device_id)

    def inventory_changed(self) -> None:
        """Devices were added, changed or removed: re-read what is cached about them."""
        self.addresses.invalidate()

    def _take_batch(self) -> tuple[list[CheckOutcome | Trap], bool]:
        batch: list[CheckOutcome | Trap] = []
        try:
            first = self._queue.get(timeout=1.0)
        except queue.Empty:
            return batch, False
        if first is None:
            return batch, True
        batch.append(first)
        deadline = time.monotonic() + (TRAP_BATCH_SECONDS if isinstance(first, Trap) else self.settings.writer_batch_seconds)
        while len(batch) < MAX_BATCH:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
            if isinstance(item, Trap):  # a trap should be an alert within milliseconds, not a batch window
                deadline = min(deadline, time.monotonic() + TRAP_BATCH_SECONDS)
        return batch, False

    def _commit(self, batch: list[CheckOutcome | Trap]) -> list[Transition]:
        outcomes = [o for o in batch if isinstance(o, CheckOutcome)]
        trap_batch = [t for t in batch if isinstance(t, Trap)]
        delay = 0.5
        while True:
            full = self.storage is not None and self.storage.full
            held: list[SampleRow] | None = [] if full else None
            try:
                with self.engine.begin() as conn:
                    if trap_batch:
                        apply_traps(conn, trap_batch, self.addresses)
                    transitions: list[Transition] = []
                    applied = outcomes if self.claim is None or not outcomes else self.claim(conn, outcomes)
                    if applied:
                        transitions = apply_outcomes(conn, applied, self.cache, self.settings.down_after_failures,
                                                     self.hooks, held)
                if held:
                    self._hold(held)  # only once committed: a retried batch must not hold its samples twice
                return transitions
            except Exception as exc:
                self.errors += 1
                self.last_error = short_error(exc)
                self.cache = SeriesCache()  # ids created in a rolled-back transaction are gone
                if self.storage is not None and is_full_error(exc):
                    self.storage.hit(exc)
                    if not full:
                        continue  # again at once, samples in memory, in the room the released reserve made
                    log.warning("writing %d outcomes failed, the disk is full; retrying in %.0fs", len(batch),
                                FULL_RETRY_SECONDS)
                    time.sleep(FULL_RETRY_SECONDS)
                    self._try_recover()
                    continue
                log.exception("writing %d outcomes failed; retrying in %.1fs", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _hold(self, rows: list[SampleRow]) -> None:
        self.held.extend(rows)
        excess = len(self.held) - MAX_HELD_SAMPLES
        if excess > 0:
            del self.held[:excess]
            self.held_dropped += excess

    def _try_recover(self) -> None:
        """While the disk is full: once there is room again, write the held samples and touches, then carry on."""
        storage = self.storage
        if storage is None or not storage.room_again():
            return
        rows = self.held
        touched, used = storage.take_touches()
        try:
            with self.engine.begin() as conn:
                for start in range(0, len(rows), 50_000):
                    write_samples(conn, self.cache, rows[start : start + 50_000])
                sessions.touch_many(conn, touched)
                accounts.touch_tokens(conn, used)
        except Exception as exc:
            self.cache = SeriesCache()
            for sid, ts in touched.items():
                storage.defer(sid, None, ts)
            for token_hash, ts in used.items():
                storage.defer(None, token_hash, ts)
            if is_full_error(exc):
                storage.hit(exc)
                return
            log.exception("writing %d held samples failed; will retry", len(rows))
            return
        self.held = []
        log.warning("wrote %d samples held while the disk was full", len(rows))
        storage.cleared()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take_batch()
            if batch:
                started = time.monotonic()
                transitions = self._commit(batch)
                self.batch_seconds.append(time.monotonic() - started)
                self.batches += 1
                outcomes = [o for o in batch if isinstance(o, CheckOutcome)]
                self.rows += sum(len(o.samples) for o in outcomes)
                for listener in self.listeners:
                    try:
                        listener(transitions, outcomes)
                    except Exception:
                        log.exception("a listener failed")
                with self._idle:
                    self._pending -= len(batch)
                    self._idle.notify_all()
                del batch, transitions, outcomes  # don't hold the last batch's samples while idle
            if self.storage is not None and self.storage.full:
                self._try_recover()
                continue  # no rollup while full: it would eat the room kept for states and alerts
            if self.maintenance_enabled and time.monotonic() - self._last_maintenance >= MAINTENANCE_EVERY:
                self.maintain()

    def maintain(self) -> None:
        """Roll up and expire samples (runs on the writer thread so writes never contend)."""
        self._last_maintenance = time.monotonic()
        s = self.settings
        try:
            with self.engine.begin() as conn:
                rollup(conn)
                expire(conn, s.raw_retention_hours, s.rollup_5m_retention_days, s.rollup_1h_retention_days)
                expire_traps(conn)
                accounts.prune_login_attempts(conn)
        except Exception:
            log.exception("rollup/retention failed; will retry")
