"""The secrets key's in-use lock: every serve, demo and worker holds it shared; `secrets rotate` needs it alone.

SQLite: flock() on a file next to the database. PostgreSQL: a session advisory lock, seen by every host
using the database, looked at every KEEP_SECONDS and taken again when its session was cut.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, make_url, text

log = logging.getLogger("pocketnoc")

ADVISORY_LOCK = 0x706E6F63  # "pnoc"
KEEP_SECONDS = 20.0  # how often a holder looks at its lock's session
IN_USE = (
    "a pocketnoc server, demo or worker is using this database ({where}); stop it first (rotating under it "
    "leaves it unable to read secrets until restarted), or pass --force if it is really gone"
)
_HELD: dict[str, Any] = {}


class KeyInUse(Exception):
    """A server, demo or worker holds the database's in-use lock."""


def lock_file(db_url: str) -> Path:
    """The SQLite database's in-use lock file (next to it, in the data dir by default)."""
    database = make_url(db_url).database or "pocketnoc.db"
    path = Path(database)
    return path.with_name(path.name + ".lock")


def hold_key(db_url: str) -> None:
    """Mark this process as a user of the database's key until it exits (idempotent)."""
    if db_url in _HELD:
        return
    if db_url.startswith("sqlite"):
        path = lock_file(db_url)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by child processes (O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a rotation runs
        _HELD[db_url] = fd
        return
    from server.store.db import make_engine

    engine = make_engine(db_url, pool_size=1)
    _HELD[db_url] = (engine, _lock_session(engine))
    threading.Thread(target=_keep_holding, args=(db_url,), name="pocketnoc-key-lock", daemon=True).start()


def _lock_session(engine: Engine) -> Connection:
    conn = engine.connect()
    conn.execute(text("SELECT pg_advisory_lock_shared(:key)"), {"key": ADVISORY_LOCK})
    conn.commit()  # the lock belongs to the session: no transaction is left open
    return conn


def _keep_holding(db_url: str, every: float = KEEP_SECONDS) -> None:
    """The shared lock lives as long as its session: look at it often (an idle session may be cut by a timeout, a
    NAT or a PostgreSQL restart) and take it again on a new session when it is gone."""
    while db_url in _HELD:
        time.sleep(every)
        held = _HELD.get(db_url)
        if not isinstance(held, tuple):
            return
        engine, conn = held
        try:
            conn.execute(text("SELECT 1"))
            conn.commit()
            continue
        except Exception:  # the session is gone, and the lock with it
            with contextlib.suppress(Exception):
                conn.close()
        try:
            _HELD[db_url] = (engine, _lock_session(engine))
            log.warning("the database session holding the key's in-use lock was lost; holding it again")
        except Exception as exc:  # the database is away: try again at the next look
            log.warning("cannot hold the key's in-use lock (%s); trying again in %.0fs", type(exc).__name__, every)


@contextlib.contextmanager
def exclusive_key(engine: Engine, force: bool = False) -> Iterator[None]:
    """Hold the exclusive in-use lock for a rotation; RotationError while a server or worker holds it."""
    url = engine.url.render_as_string(hide_password=False)
    if force:
        yield
        return
    if engine.dialect.name == "sqlite":
        path = lock_file(url)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:  # no data dir: no database, nothing runs on it (rotate says what is missing)
            yield
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise KeyInUse(IN_USE.format(where=f"lock {path}")) from None
            yield
        finally:
            os.close(fd)
        return
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK}).scalar():
            raise KeyInUse(IN_USE.format(where=f"PostgreSQL advisory lock {ADVISORY_LOCK}"))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK})
            conn.commit()
