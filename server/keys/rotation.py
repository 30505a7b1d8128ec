"""The secrets key: a start-up check that fails closed, and `pocketnoc secrets rotate` (re-encrypt, then swap the key file).

What is sealed is found by server.store.sealed and re-encrypted in one transaction; the in-use lock that keeps
a rotation from running under a server is server.store.keylock.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from server.keys.secretbox import SecretBox, SecretsUnavailable
from server.store import sealed
from server.store.db import Engine, IntegrityError

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
        canary = sealed.canary(conn)
        if canary is not None:
            if not _opens(box.fernet, canary):
                raise SecretsUnavailable(WRONG_KEY)
            return
        for *_, token in sealed.tokens(conn)[:1]:
            if not _opens(box.fernet, token):
                raise SecretsUnavailable(WRONG_KEY)
        made = box.seal({"check": "pocketnoc"})
        if made is not None:
            sealed.write_canary(conn, made.decode())


def _all_open(engine: Engine, fernet: Fernet) -> bool:
    with engine.connect() as conn:
        tokens = [t[-1] for t in sealed.tokens(conn)]
        canary = sealed.canary(conn)
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
                return Rotated(len(sealed.tokens(conn)), key_file)
        new_path.unlink()
    if not _all_open(engine, current):
        raise RotationError(WRONG_KEY)
    _write_key(old_path, key_file.read_bytes().strip())
    new_key = Fernet.generate_key()
    _write_key(new_path, new_key)
    both = MultiFernet([Fernet(new_key), current])
    try:
        with engine.begin() as conn:
            count = sealed.reseal(conn, both.rotate)
    except Exception:
        new_path.unlink(missing_ok=True)
        old_path.unlink(missing_ok=True)
        raise
    os.replace(new_path, key_file)
    _sync_dir(key_file.parent)
    old_path.unlink()
    return Rotated(count, key_file)
