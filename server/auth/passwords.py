"""Passwords: the Argon2id hasher, the rules for user names and new passwords, adding a user.

Apart from server.auth.access (which re-exports these) so that `pocketnoc user` and `token` import no FastAPI.
"""

from __future__ import annotations

import functools
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from server.store import accounts
from server.store.accounts import ROLES
from server.store.db import Connection

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
# The one Argon2id hasher of passwords and recovery codes: argon2-cffi's defaults, RFC 9106's second recommended
# option (t=3, m=64 MiB, p=4; ~190 ms of CPU a hash here). Every use reads it from this module at call time.
hasher = PasswordHasher()


@functools.cache
def dummy_hash() -> str:
    """Verified against when the user does not exist, so both paths cost the same. Made once per process on first
    use (the app's start-up makes it), not at import: `pocketnoc user` and `token` need no extra Argon2 hash."""
    return hasher.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user-management request that cannot be done (bad name, weak password, duplicate)."""


def hash_password(password: str) -> str:
    """Argon2id hash of a password (or of a recovery code)."""
    return hasher.hash(password)


def matches(stored: str, secret: str) -> bool:
    """Whether `secret` is what `stored` (an Argon2 hash) was made from; a broken hash is no match."""
    try:
        return bool(hasher.verify(stored, secret[:1024]))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_new_user(name: str, role: str, password: str) -> None:
    """Validate a new user's name, role and password."""
    if not USERNAME_RE.match(name):
        raise UserError("user names are 1-64 letters, digits or . _ @ - and start with a letter or digit")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    check_password(password)


def check_password(password: str) -> None:
    """Refuse short or absurd passwords."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"passwords need at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise UserError("password too long")


def create_user(conn: Connection, name: str, role: str, password: str) -> int:
    """Validate and add a user."""
    check_new_user(name, role, password)
    if accounts.get_user_by_name(conn, name):
        raise UserError(f"user {name!r} already exists")
    return accounts.insert_user(conn, name, hash_password(password), role)


def generate_password() -> str:
    """A strong random password for `user add` without stdin."""
    return secrets.token_urlsafe(15)
