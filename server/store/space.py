"""A full disk degrades, never breaks: tell disk-full errors apart, keep a reserve file to release, know the free space.

While the disk is full the writer stores states, alerts and notifications in the room the released reserve makes,
and keeps samples in memory; sessions and tokens are not touched (their touches are kept here and written later).
The state ends when the free space is back above twice the reserve: held samples and touches are written then and
the reserve is made again.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("pocketnoc.storage")
RESERVE_NAME = "reserve.bin"
BLIND_RETRY_SECONDS = 10.0
FULL_MESSAGE = "storage full — results are not being saved"
# SQLite: SQLITE_FULL and SQLITE_IOERR texts; PostgreSQL: SQLSTATE 53100 (disk_full) and its usual wording.
_FULL_TEXTS = ("database or disk is full", "disk i/o error", "no space left on device", "could not extend file",
               "disk full")


def is_full_error(exc: BaseException) -> bool:
    """Is this (database) error the disk being full?"""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if getattr(current, "pgcode", None) == "53100" or getattr(current, "sqlstate", None) == "53100":
            return True
        if any(text in str(current).lower() for text in _FULL_TEXTS):
            return True
        current = getattr(current, "orig", None) or current.__cause__
    return False


@dataclass(frozen=True, slots=True)
class StorageStatus:
    """What /healthz and the overview say about storage."""

    full: bool
    since: float | None
    free_bytes: int | None
    reserve_bytes: int
    last_error: str | None
    errors: int


class Storage:
    """The data directory's free space, the reserve file, and whether writes are failing for lack of space."""

    def __init__(self, data_dir: Path | None, reserve_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = data_dir
        self.reserve_bytes = reserve_bytes
        self.clock = clock
        self.full = False
        self.since: float | None = None
        self.last_error: str | None = None
        self.errors = 0
        self._lock = threading.Lock()
        self._last_try = 0.0
        self.session_touches: dict[str, float] = {}  # session id -> last seen, not written while full
        self.token_touches: dict[str, float] = {}  # token digest -> last used

    @property
    def reserve(self) -> Path | None:
        """The reserve file (None: no data directory on this host, e.g. PostgreSQL elsewhere)."""
        return self.data_dir / RESERVE_NAME if self.data_dir is not None else None

    def free_bytes(self) -> int | None:
        """Free space of the data directory's file system."""
        if self.data_dir is None:
            return None
        try:
            return int(shutil.disk_usage(self.data_dir).free)
        except OSError:
            return None

    def make_reserve(self) -> bool:
        """Create the reserve file if it is missing and there is room for it with as much again to spare."""
        path = self.reserve
        if path is None or self.reserve_bytes <= 0:
            return False
        try:
            if path.exists() and path.stat().st_size >= self.reserve_bytes:
                return True
            free = self.free_bytes() or 0
            if free < 2 * self.reserve_bytes:
                return False
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)  # real blocks, not a sparse file
            finally:
                os.close(fd)
            return True
        except OSError:
            log.warning("could not make the storage reserve %s", path, exc_info=True)
            path.unlink(missing_ok=True)
            return False

    def hit(self, exc: BaseException) -> None:
        """A write failed for lack of space: release the reserve (room for states and alerts) and say so."""
        with self._lock:
            self.errors += 1
            orig = getattr(exc, "orig", None) or exc
            self.last_error = (str(orig).splitlines() or [""])[0][:200]
            if self.full:
                return
            self.full, self.since = True, self.clock()
        path = self.reserve
        if path is not None:
            path.unlink(missing_ok=True)
        log.error("%s (%s free): %s", FULL_MESSAGE, human(self.free_bytes()), self.last_error)

    def room_again(self) -> bool:
        """While full: is there room again (twice the reserve, at least 1 MB, free)?

        Without a local data directory (the database's disk is elsewhere) only a write can tell: try every 10 s.
        """
        if not self.full:
            return False
        free = self.free_bytes()
        if free is None:
            now = self.clock()
            if now - self._last_try < BLIND_RETRY_SECONDS:
                return False
            self._last_try = now
            return True
        return free >= max(2 * self.reserve_bytes, 1 << 20)

    def cleared(self) -> None:
        """Everything held was written: back to normal, with a new reserve."""
        with self._lock:
            self.full, self.since = False, None
        self.make_reserve()
        log.warning("storage has room again: held results were written")

    def take_touches(self) -> tuple[dict[str, float], dict[str, float]]:
        """The deferred session and token touches (emptied)."""
        with self._lock:
            sessions, tokens = self.session_touches, self.token_touches
            self.session_touches, self.token_touches = {}, {}
        return sessions, tokens

    def defer(self, session_id: str | None, token_hash: str | None, now: float) -> None:
        """Remember a touch that could not be written."""
        with self._lock:
            if session_id is not None:
                self.session_touches[session_id] = now
            if token_hash is not None:
                self.token_touches[token_hash] = now

    def status(self) -> StorageStatus:
        """The figures for /healthz and the overview."""
        return StorageStatus(self.full, self.since, self.free_bytes(), self.reserve_bytes, self.last_error, self.errors)


def human(size: int | None) -> str:
    """'12.3 MB' for a byte count."""
    if size is None:
        return "unknown"
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
