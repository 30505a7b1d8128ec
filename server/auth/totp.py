"""TOTP (authenticator apps) with one-use codes, and single-use recovery codes stored as argon2 hashes."""

from __future__ import annotations

import hmac
import re
import secrets
import time

import pyotp
import segno

from server.auth import passwords
from server.keys.secretbox import SecretBox
from server.store import twofactor
from server.store.db import Connection

ISSUER = "pocketnoc"
STEP = 30
DIGITS = 6
WINDOW = 1  # one step either side: phones' clocks drift
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
_RECOVERY_RE = re.compile(r"^[a-z0-9]{5}-?[a-z0-9]{5}$")


def clock() -> float:
    """The time codes are checked against (one place, so tests can move it forward a step)."""
    return time.time()


def new_secret() -> str:
    """A random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    """The otpauth:// link an authenticator app understands (tap it on the phone, or scan the QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The link as an SVG QR code in a data: URI (the CSP allows data: images, not inline script)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def grouped(secret: str) -> str:
    """The secret in groups of four, for typing it into an app by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def clean_code(code: str) -> str:
    """Digits of a TOTP code as typed ("123 456" and "123-456" are fine)."""
    return re.sub(r"[\s-]", "", code or "")[:32]


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step whose code this is (within the window), or None."""
    code = clean_code(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP)
    current = int((now if now is not None else clock()) // STEP)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # Compare every candidate, so timing does not tell which step matched.
        if hmac.compare_digest(totp.at(step * STEP).encode(), code.encode()):
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """Ten fresh recovery codes like 'k7m2p-x9q4r' (about 49 bits each)."""
    return [
        "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(5))
        + "-"
        + "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(5))
        for _ in range(RECOVERY_CODES)
    ]


def _normal_recovery(code: str) -> str | None:
    value = re.sub(r"\s", "", (code or "")[:64]).lower()
    if not _RECOVERY_RE.match(value):
        return None
    return value.replace("-", "")


def hash_recovery(code: str) -> str:
    """Argon2id hash of a recovery code (dash and case do not matter)."""
    normal = _normal_recovery(code)
    if normal is None:
        raise ValueError("not a recovery code")
    return passwords.hash_password(normal)


# ---------------------------------------------------------------- with the database


def verify_code(conn: Connection, box: SecretBox, user_id: int, code: str) -> str | None:
    """Check a TOTP code (each works once) or a recovery code (single use); returns "totp", "recovery" or None."""
    secret_blob, _ = twofactor.totp_blobs(conn, user_id)
    digits = clean_code(code)
    if secret_blob is not None and len(digits) == DIGITS and digits.isdigit():
        secret = str(box.open(secret_blob).get("totp", ""))
        step = matching_step(secret, code) if secret else None
        if step is not None and twofactor.claim_totp_step(conn, user_id, step):
            return "totp"
        return None
    normal = _normal_recovery(code)
    if normal is None:
        return None
    for code_id, stored in twofactor.unused_recovery_codes(conn, user_id):
        if passwords.matches(stored, normal) and twofactor.use_recovery_code(conn, code_id):
            return "recovery"
    return None


def begin_enrolment(conn: Connection, box: SecretBox, user_id: int) -> str:
    """Start TOTP enrolment: a new secret, kept sealed as pending until a code confirms it."""
    secret = new_secret()
    sealed = box.seal({"totp": secret})
    if sealed is None:
        raise ValueError("nothing to seal")
    twofactor.set_totp_pending(conn, user_id, sealed)
    return secret


def pending_secret(conn: Connection, box: SecretBox, user_id: int) -> str | None:
    """The secret of an enrolment in progress."""
    _, pending = twofactor.totp_blobs(conn, user_id)
    if pending is None:
        return None
    return str(box.open(pending).get("totp", "")) or None


def confirm_enrolment(conn: Connection, box: SecretBox, user_id: int, code: str) -> list[str] | None:
    """Finish enrolment with a code from the app; returns fresh recovery codes (shown once), or None."""
    _, pending = twofactor.totp_blobs(conn, user_id)
    if pending is None:
        return None
    secret = str(box.open(pending).get("totp", ""))
    step = matching_step(secret, code) if secret else None
    if step is None:
        return None
    twofactor.confirm_totp(conn, user_id, pending, step)
    return issue_recovery_codes(conn, user_id)


def issue_recovery_codes(conn: Connection, user_id: int) -> list[str]:
    """Replace the user's recovery codes with ten new ones; only their hashes are stored."""
    codes = new_recovery_codes()
    twofactor.replace_recovery_codes(conn, user_id, [hash_recovery(c) for c in codes])
    return codes
