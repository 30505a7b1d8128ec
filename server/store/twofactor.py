"""Second factors in the database: TOTP state, recovery codes, passkeys and pending WebAuthn challenges."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from server.store.schema import passkeys, recovery_codes, users, webauthn_challenges


@dataclass(frozen=True, slots=True)
class Factors:
    """Which second factors a user has."""

    totp: bool
    passkeys: int
    recovery_left: int

    @property
    def any(self) -> bool:
        """True when the user has at least one second factor."""
        return self.totp or self.passkeys > 0


def factors(conn: Connection, user_id: int) -> Factors:
    """The second factors of a user."""
    totp = conn.execute(select(users.c.totp_secret).where(users.c.id == user_id)).scalar()
    keys = conn.execute(select(func.count()).select_from(passkeys).where(passkeys.c.user_id == user_id)).scalar()
    unused = (recovery_codes.c.user_id == user_id) & recovery_codes.c.used_at.is_(None)
    left = conn.execute(select(func.count()).select_from(recovery_codes).where(unused)).scalar()
    return Factors(totp=totp is not None, passkeys=int(keys or 0), recovery_left=int(left or 0))


# ---------------------------------------------------------------- TOTP


def totp_blobs(conn: Connection, user_id: int) -> tuple[bytes | None, bytes | None]:
    """The sealed (confirmed, pending) TOTP secrets of a user."""
    row = conn.execute(select(users.c.totp_secret, users.c.totp_pending).where(users.c.id == user_id)).first()
    if row is None:
        return None, None
    return (bytes(row.totp_secret) if row.totp_secret else None, bytes(row.totp_pending) if row.totp_pending else None)


def set_totp_pending(conn: Connection, user_id: int, sealed: bytes) -> None:
    """Start (or restart) a TOTP enrolment."""
    conn.execute(update(users).where(users.c.id == user_id).values(totp_pending=sealed))


def confirm_totp(conn: Connection, user_id: int, sealed: bytes, step: int) -> None:
    """Make the pending secret the user's TOTP secret; the confirming code's step is used up."""
    conn.execute(update(users).where(users.c.id == user_id).values(totp_secret=sealed, totp_pending=None, totp_last_step=step))


def claim_totp_step(conn: Connection, user_id: int, step: int) -> bool:
    """Atomically use up a time step: False if it (or a later one) was used already (replay)."""
    result = conn.execute(
        update(users)
        .where(users.c.id == user_id, or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step))
        .values(totp_last_step=step)
    )
    return bool(result.rowcount)


def clear_factors(conn: Connection, user_id: int) -> None:
    """Remove every second factor of a user (the 2FA reset)."""
    conn.execute(update(users).where(users.c.id == user_id).values(totp_secret=None, totp_pending=None, totp_last_step=None))
    conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    conn.execute(delete(passkeys).where(passkeys.c.user_id == user_id))
    conn.execute(delete(webauthn_challenges).where(webauthn_challenges.c.user_id == user_id))


def clear_totp(conn: Connection, user_id: int) -> None:
    """Remove the authenticator app (passkeys stay); recovery codes go when no factor is left."""
    conn.execute(update(users).where(users.c.id == user_id).values(totp_secret=None, totp_pending=None))
    if not factors(conn, user_id).any:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))


# ---------------------------------------------------------------- recovery codes


def replace_recovery_codes(conn: Connection, user_id: int, hashes: list[str]) -> None:
    """Swap all recovery codes of a user for new ones (given as hashes)."""
    conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    now = time.time()
    for code_hash in hashes:
        conn.execute(insert(recovery_codes).values(user_id=user_id, code_hash=code_hash, created_at=now))


def unused_recovery_codes(conn: Connection, user_id: int) -> list[tuple[int, str]]:
    """(id, hash) of each recovery code not used yet."""
    rows = conn.execute(
        select(recovery_codes.c.id, recovery_codes.c.code_hash).where(
            recovery_codes.c.user_id == user_id, recovery_codes.c.used_at.is_(None)
        )
    )
    return [(int(r.id), str(r.code_hash)) for r in rows]


def use_recovery_code(conn: Connection, code_id: int) -> bool:
    """Mark a code used; False when somebody used it a moment earlier."""
    unused = (recovery_codes.c.id == code_id) & recovery_codes.c.used_at.is_(None)
    result = conn.execute(update(recovery_codes).where(unused).values(used_at=time.time()))
    return bool(result.rowcount)


# ---------------------------------------------------------------- passkeys


def webauthn_handle(conn: Connection, user_id: int) -> bytes:
    """The user's random WebAuthn user handle, made on first use."""
    found = conn.execute(select(users.c.webauthn_id).where(users.c.id == user_id)).scalar()
    if found:
        return base64.urlsafe_b64decode(str(found) + "=" * (-len(str(found)) % 4))
    raw = secrets.token_bytes(32)
    handle = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    conn.execute(update(users).where(users.c.id == user_id).values(webauthn_id=handle))
    return raw


class PasskeyView(TypedDict):
    """A passkey as its owner sees it (no key material)."""

    id: int
    name: str
    created_at: float
    last_used: float | None


@dataclass(frozen=True, slots=True)
class Passkey:
    """A passkeys row: a registered WebAuthn credential."""

    id: int
    user_id: int
    credential_id: str
    public_key: bytes
    sign_count: int
    name: str
    transports: list[str]
    created_at: float
    last_used: float | None


def list_passkeys(conn: Connection, user_id: int) -> list[PasskeyView]:
    """A user's passkeys (no key material)."""
    rows = conn.execute(select(passkeys).where(passkeys.c.user_id == user_id).order_by(passkeys.c.id))
    return [{"id": r.id, "name": r.name, "created_at": r.created_at, "last_used": r.last_used} for r in rows]


def credential_ids(conn: Connection, user_id: int) -> list[tuple[str, list[str]]]:
    """(credential id, transports) of each passkey of a user."""
    rows = conn.execute(select(passkeys.c.credential_id, passkeys.c.transports).where(passkeys.c.user_id == user_id))
    return [(str(r.credential_id), list(r.transports or [])) for r in rows]


def add_passkey(
    conn: Connection, user_id: int, credential_id: str, public_key: bytes, sign_count: int, name: str, transports: list[str]
) -> int:
    """Store a newly registered passkey."""
    result = conn.execute(
        insert(passkeys).values(
            user_id=user_id,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            name=name[:64],
            transports=transports[:8],
            created_at=time.time(),
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def find_passkey(conn: Connection, credential_id: str) -> Passkey | None:
    """The passkey row with this credential id, or None."""
    row = conn.execute(select(passkeys).where(passkeys.c.credential_id == credential_id[:512])).first()
    return Passkey(**row._mapping) if row is not None else None


def passkey_used(conn: Connection, passkey_id: int, sign_count: int) -> None:
    """Record a successful use and the authenticator's new signature counter."""
    conn.execute(update(passkeys).where(passkeys.c.id == passkey_id).values(sign_count=sign_count, last_used=time.time()))


def remove_passkey(conn: Connection, user_id: int, passkey_id: int) -> str | None:
    """Delete one of this user's passkeys; returns its name, or None if it is not theirs."""
    name = conn.execute(select(passkeys.c.name).where(passkeys.c.id == passkey_id, passkeys.c.user_id == user_id)).scalar()
    if name is None:
        return None
    conn.execute(delete(passkeys).where(passkeys.c.id == passkey_id))
    if not factors(conn, user_id).any:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    return str(name)


# ---------------------------------------------------------------- WebAuthn challenges


class Challenge(NamedTuple):
    """A webauthn_challenges row: a challenge handed out for one ceremony."""

    id: str
    purpose: str
    binding: str
    user_id: int | None
    created_at: float


CHALLENGE_TTL = 300.0


def _challenge_key(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def save_challenge(conn: Connection, challenge: bytes, purpose: str, binding: str, user_id: int | None) -> None:
    """Remember a challenge we handed out, bound to a session or sign-in form, for one ceremony."""
    now = time.time()
    conn.execute(delete(webauthn_challenges).where(webauthn_challenges.c.created_at < now - CHALLENGE_TTL))
    conn.execute(
        insert(webauthn_challenges).values(
            id=_challenge_key(challenge), purpose=purpose, binding=binding, user_id=user_id, created_at=now
        )
    )


def take_challenge(conn: Connection, challenge: bytes, purpose: str, binding: str) -> Challenge | None:
    """Use up a challenge: the row if it was ours, unexpired, for this purpose and binding; else None."""
    key = _challenge_key(challenge)
    row = conn.execute(select(webauthn_challenges).where(webauthn_challenges.c.id == key)).first()
    if row is None:
        return None
    conn.execute(delete(webauthn_challenges).where(webauthn_challenges.c.id == key))
    if row.purpose != purpose or not secrets.compare_digest(row.binding, binding):
        return None
    if time.time() - row.created_at > CHALLENGE_TTL:
        return None
    return Challenge(**row._mapping)
