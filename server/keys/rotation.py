"""The secrets key: a start-up check that fails closed, and `pocketnoc secrets rotate` (re-encrypt, then swap the key file).

Every column sealed with the secret box is listed in SEALED, so rotation re-encrypts all of them in one
transaction. A canary in the `meta` table tells a wrong key from an empty database.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, Connection, Engine, Table, insert, make_url, select, text, update
from sqlalchemy.exc import IntegrityError

from server.keys.secretbox import KEY_CHANGED, SecretBox, SecretsUnavailable
from server.store.schema import meta, metadata

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("pocketnoc")

CANARY_KEY = "secret_key_check"
# Every (table, column) sealed with the secret box: add one here when a table starts keeping sealed secrets
# (tests/server/test_security_secrets.py fails on a sealed-looking column missing here).
SEALED_COLUMNS: list[tuple[str, str]] = [
    ("devices", "secrets"),
    ("users", "totp_secret"),
    ("users", "totp_pending"),
    ("notify_channels", "secret"),
    ("push_subscriptions", "secret"),
]
# Keys of the `meta` table whose values are sealed tokens (text).
SEALED_META: list[str] = [CANARY_KEY, "vapid_private_key"]
WRONG_KEY = (
    "the secret key does not match this database: encrypted secrets cannot be read. "
    "Start with the key file (or POCKETNOC_SECRET_KEY) that was in use; "
    "if `pocketnoc secrets rotate` was interrupted, run it again to finish."
)


class RotationError(Exception):
    """Rotation cannot start or had to stop; nothing was changed."""


# ---------------------------------------------------------------- "the key is in use"
# Every serve, demo and worker holds a shared lock on its database for as long as it runs (taken once its key
# check passed); `secrets rotate` needs the exclusive one, so it refuses while any of them runs. SQLite: flock()
# on a file next to the database. PostgreSQL: a session advisory lock, seen by every host using the database.
ADVISORY_LOCK = 0x706E6F63  # "pnoc"
KEEP_SECONDS = 20.0  # how often a holder looks at its lock's session
IN_USE = (
    "a pocketnoc server, demo or worker is using this database ({where}); stop it first (rotating under it "
    "leaves it unable to read secrets until restarted), or pass --force if it is really gone"
)
_HELD: dict[str, Any] = {}


class KeyInUse(RotationError):
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


def install_handler(app: FastAPI) -> None:
    """A key rotated under a running server: routes that unseal answer 503 with why, not 500 and a traceback."""
    from fastapi import Request
    from fastapi.responses import JSONResponse, Response

    async def key_changed(request: Request, _exc: Exception) -> Response:
        log.warning("%s %s: %s", request.method, request.url.path, KEY_CHANGED)
        if request.url.path.startswith("/api/") or request.url.path == "/metrics":
            return JSONResponse({"detail": KEY_CHANGED}, status_code=503)
        from server.web.pages.common import render_error

        return render_error(request, 503, "The secrets key changed (pocketnoc secrets rotate); restart pocketnoc.")

    app.add_exception_handler(SecretsUnavailable, key_changed)


@dataclass(frozen=True, slots=True)
class Rotated:
    """What a rotation did."""

    values: int
    key_file: Path


def sealed_columns() -> list[tuple[Table, Column[Any], Column[Any]]]:
    """(table, primary key, column) of every sealed column that exists in this schema."""
    found = []
    for table_name, column_name in SEALED_COLUMNS:
        table = metadata.tables.get(table_name)
        if table is not None and column_name in table.c:
            (pk,) = table.primary_key.columns
            found.append((table, pk, table.c[column_name]))
    return found


def _tokens(conn: Connection) -> list[tuple[Table, Column[Any], Column[Any], Any, bytes]]:
    found = []
    for table, pk, column in sealed_columns():
        for row in conn.execute(select(pk, column).where(column.is_not(None))):
            found.append((table, pk, column, row[0], bytes(row[1])))
    for row in conn.execute(select(meta.c.key, meta.c.value).where(meta.c.key.in_(SEALED_META), meta.c.key != CANARY_KEY)):
        if row.value:
            found.append((meta, meta.c.key, meta.c.value, row.key, str(row.value).encode()))
    return found


def _canary(conn: Connection) -> bytes | None:
    value = conn.execute(select(meta.c.value).where(meta.c.key == CANARY_KEY)).scalar()
    return str(value).encode() if value else None


def _opens(fernet: Fernet | MultiFernet, token: bytes) -> bool:
    try:
        fernet.decrypt(token)
    except InvalidToken:
        return False
    return True


def check_key(engine: Engine, box: SecretBox) -> None:
    """Fail closed when the key cannot open what the database holds; record a canary on first use."""
    try:
        _check_key(engine, box)
    except IntegrityError:
        _check_key(engine, box)  # another process wrote the canary first: check against theirs


def _check_key(engine: Engine, box: SecretBox) -> None:
    with engine.begin() as conn:
        canary = _canary(conn)
        if canary is not None:
            if not _opens(box.fernet, canary):
                raise SecretsUnavailable(WRONG_KEY)
            return
        for *_, token in _tokens(conn)[:1]:
            if not _opens(box.fernet, token):
                raise SecretsUnavailable(WRONG_KEY)
        sealed = box.seal({"check": "pocketnoc"})
        if sealed is not None:
            conn.execute(insert(meta).values(key=CANARY_KEY, value=sealed.decode()))


def _reseal(conn: Connection, change: Callable[[bytes], bytes]) -> int:
    count = 0
    for table, pk, column, row_id, token in _tokens(conn):
        sealed = change(token)
        value: bytes | str = sealed.decode() if table is meta else sealed  # meta values are text
        conn.execute(update(table).where(pk == row_id).values({column.name: value}))
        count += 1
    canary = _canary(conn)
    if canary is not None:
        conn.execute(update(meta).where(meta.c.key == CANARY_KEY).values(value=change(canary).decode()))
        count += 1
    return count


def _all_open(engine: Engine, fernet: Fernet) -> bool:
    with engine.connect() as conn:
        tokens = [t[-1] for t in _tokens(conn)]
        canary = _canary(conn)
    return all(_opens(fernet, t) for t in [*tokens, *([canary] if canary else [])])


def _write_key(path: Path, key: bytes) -> None:
    """Write a key file atomically with mode 0600 (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _sync_dir(path.parent)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_key(path: Path) -> Fernet:
    try:
        return Fernet(path.read_bytes().strip())
    except (OSError, ValueError):
        raise RotationError(f"{path} does not hold a valid key") from None


def rotate(engine: Engine, key_file: Path) -> Rotated:
    """Re-encrypt every sealed value under a new key in one transaction, then swap the key file atomically.

    The old key is kept as KEY.old and the new one as KEY.new until the swap is done; running again after
    a crash finishes (or cleanly restarts) an interrupted rotation.
    """
    if os.environ.get("POCKETNOC_SECRET_KEY"):
        raise RotationError(
            "the key comes from POCKETNOC_SECRET_KEY; rotation works on the key file: move the key into "
            "secret_key_file, unset the variable, then rotate"
        )
    if not key_file.exists():
        raise RotationError(f"secret key file {key_file} does not exist")
    new_path = key_file.with_name(key_file.name + ".new")
    old_path = key_file.with_name(key_file.name + ".old")
    current = _read_key(key_file)
    if new_path.exists():
        pending = _read_key(new_path)
        if _all_open(engine, pending) and not _all_open(engine, current):
            os.replace(new_path, key_file)  # the database was re-encrypted; only the swap was missing
            _sync_dir(key_file.parent)
            old_path.unlink(missing_ok=True)
            with engine.connect() as conn:
                return Rotated(len(_tokens(conn)), key_file)
        new_path.unlink()
    if not _all_open(engine, current):
        raise RotationError(WRONG_KEY)
    _write_key(old_path, key_file.read_bytes().strip())
    new_key = Fernet.generate_key()
    _write_key(new_path, new_key)
    both = MultiFernet([Fernet(new_key), current])
    try:
        with engine.begin() as conn:
            count = _reseal(conn, both.rotate)
    except Exception:
        new_path.unlink(missing_ok=True)
        old_path.unlink(missing_ok=True)
        raise
    os.replace(new_path, key_file)
    _sync_dir(key_file.parent)
    old_path.unlink()
    return Rotated(count, key_file)
