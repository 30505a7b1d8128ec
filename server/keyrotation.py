"""The secrets key: a start-up check that fails closed, and `pocketnoc secrets rotate` (re-encrypt, then swap the key file).

Every column sealed with the secret box is listed in SEALED, so rotation re-encrypts all of them in one
transaction. A canary in the `meta` table tells a wrong key from an empty database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Column, Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import IntegrityError

from server.secretbox import SecretBox, SecretsUnavailable
from server.store.schema import meta, metadata

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
