"""Secrets at rest: Fernet encryption with a key kept outside the database (file or environment)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

# The start-up check proves the key opens the database, so a value that cannot be opened later means the key
# was rotated by another process (`pocketnoc secrets rotate --force`) while this one ran.
KEY_CHANGED = "secrets key changed; restart pocketnoc"


class SecretsUnavailable(Exception):
    """The key is missing or wrong: encrypted secrets cannot be read (we fail closed)."""


class SecretBox:
    """Encrypts and decrypts small JSON documents of secrets."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @property
    def fernet(self) -> Fernet:
        """The cipher (for key checks and rotation)."""
        return self._fernet

    @classmethod
    def from_file(cls, path: Path, create: bool = True) -> SecretBox:
        """Load the key from POCKETNOC_SECRET_KEY or the key file, creating a 0600 file on first start."""
        env = os.environ.get("POCKETNOC_SECRET_KEY")
        if env:
            try:
                return cls(env.strip().encode())
            except ValueError:
                raise SecretsUnavailable("POCKETNOC_SECRET_KEY is not a valid key (32 url-safe base64 bytes)") from None
        if not path.exists():
            if not create:
                raise SecretsUnavailable(f"secret key file {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(Fernet.generate_key())
        try:
            return cls(path.read_bytes().strip())
        except ValueError:
            raise SecretsUnavailable(f"secret key file {path} is not a valid key") from None

    def seal(self, values: dict[str, Any]) -> bytes | None:
        """Encrypt a dict of secrets (None when there is nothing to keep)."""
        clean = {k: v for k, v in values.items() if v is not None}
        if not clean:
            return None
        return self._fernet.encrypt(json.dumps(clean, sort_keys=True).encode())

    def open(self, blob: bytes | None) -> dict[str, Any]:
        """Decrypt what seal() made; a wrong key raises SecretsUnavailable rather than guessing."""
        if not blob:
            return {}
        try:
            data = json.loads(self._fernet.decrypt(bytes(blob)))
        except InvalidToken:
            raise SecretsUnavailable(f"stored secrets cannot be decrypted with this key: {KEY_CHANGED}") from None
        return data if isinstance(data, dict) else {}
