"""Passkeys (WebAuthn): registration, and sign-in / second factor / step-up with one tap on the phone."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from fastapi import Request
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from server.auth.access import request_scheme
from server.config.settings import Settings
from server.store import accounts, twofactor
from server.store.accounts import User
from server.store.db import Connection
from server.store.jsontypes import JsonObject

RP_NAME = "pocketnoc"
TIMEOUT_MS = 120_000
_TRANSPORTS = {t.value for t in AuthenticatorTransport}
T = TypeVar("T")


class PasskeyError(ValueError):
    """A ceremony that cannot be accepted (the message is safe to show)."""


def relying_party(request: Request, settings: Settings) -> tuple[str, str]:
    """(rp id, origin): from settings.base_url when set, else from the request's host."""
    if settings.base_url:
        parts = urlsplit(settings.base_url)
        if parts.hostname and parts.scheme in ("http", "https"):
            return parts.hostname, f"{parts.scheme}://{parts.netloc}"
    host = request.url.hostname or "localhost"
    return host, f"{request_scheme(request)}://{request.url.netloc}"


def _descriptors(conn: Connection, user_id: int) -> list[PublicKeyCredentialDescriptor]:
    out = []
    for cid, transports in twofactor.credential_ids(conn, user_id):
        known = [AuthenticatorTransport(t) for t in transports if t in _TRANSPORTS]
        out.append(PublicKeyCredentialDescriptor(id=base64url_to_bytes(cid), transports=known or None))
    return out


def _options(options_json: str) -> JsonObject:
    result = json.loads(options_json)
    if not isinstance(result, dict):
        raise TypeError("WebAuthn options are a JSON object")
    return result


def registration_options(conn: Connection, request: Request, settings: Settings, user: User, binding: str) -> JsonObject:
    """Options for navigator.credentials.create(): a discoverable credential with user verification."""
    rp_id, _ = relying_party(request, settings)
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name=RP_NAME,
        user_name=user.name,
        user_id=twofactor.webauthn_handle(conn, user.id),
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            require_resident_key=True,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(conn, user.id),
    )
    twofactor.save_challenge(conn, options.challenge, "register", binding, user.id)
    return _options(options_to_json(options))


def _response(credential: JsonObject) -> JsonObject:
    """The credential's "response" object ({} when it is missing or not an object)."""
    response = credential.get("response")
    return response if isinstance(response, dict) else {}


def _challenge_of(credential: JsonObject) -> bytes:
    try:
        client_data = base64url_to_bytes(str(_response(credential)["clientDataJSON"]))
        return parse_client_data_json(client_data).challenge
    except (KeyError, TypeError, ValueError, WebAuthnException):
        raise PasskeyError("the passkey answer is malformed") from None


def _verify(
    verify: Callable[..., T],
    request: Request,
    settings: Settings,
    credential: JsonObject,
    challenge: bytes,
    **checks: bytes | int | bool,
) -> T:
    """`verify` (py_webauthn's registration or authentication check) run against this site, whose failure is a PasskeyError."""
    rp_id, origin = relying_party(request, settings)
    try:
        return verify(credential=credential, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin, **checks)
    except (WebAuthnException, KeyError, TypeError, ValueError) as exc:
        raise PasskeyError(f"the passkey could not be verified ({type(exc).__name__})") from None


def register(
    conn: Connection, request: Request, settings: Settings, user: User, binding: str, credential: JsonObject, name: str
) -> int:
    """Verify the browser's answer to registration_options and store the new passkey."""
    challenge = _challenge_of(credential)
    row = twofactor.take_challenge(conn, challenge, "register", binding)
    if row is None or row.user_id != user.id:
        raise PasskeyError("this registration expired or belongs to another sign-in; start again")
    verified = _verify(verify_registration_response, request, settings, credential, challenge, require_user_verification=True)
    credential_id = bytes_to_base64url(verified.credential_id)
    if twofactor.find_passkey(conn, credential_id) is not None:
        raise PasskeyError("this passkey is registered already")
    raw = _response(credential).get("transports") or []
    transports = [str(t) for t in raw if isinstance(t, str) and t in _TRANSPORTS] if isinstance(raw, list) else []
    return twofactor.add_passkey(
        conn, user.id, credential_id, verified.credential_public_key, verified.sign_count, name or "passkey", transports
    )


def authentication_options(
    conn: Connection, request: Request, settings: Settings, purpose: str, binding: str, user: User | None
) -> JsonObject:
    """Options for navigator.credentials.get(); with no user, any passkey of this site may answer (sign-in)."""
    rp_id, _ = relying_party(request, settings)
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(conn, user.id) if user else None,
        user_verification=UserVerificationRequirement.REQUIRED if purpose == "login" else UserVerificationRequirement.PREFERRED,
    )
    twofactor.save_challenge(conn, options.challenge, purpose, binding, user.id if user else None)
    return _options(options_to_json(options))


def _handle_matches(conn: Connection, user_id: int, credential: JsonObject) -> bool:
    handle = _response(credential).get("userHandle")
    if not handle:
        return True
    try:
        sent = base64url_to_bytes(str(handle))
    except (ValueError, TypeError):
        return False
    return sent == twofactor.webauthn_handle(conn, user_id)


def authenticate(
    conn: Connection,
    request: Request,
    settings: Settings,
    purpose: str,
    binding: str,
    credential: JsonObject,
    user: User | None,
) -> User:
    """Verify an assertion; returns the passkey's (enabled) user, who must be `user` when one is expected."""
    challenge = _challenge_of(credential)
    row = twofactor.take_challenge(conn, challenge, purpose, binding)
    if row is None:
        raise PasskeyError("this sign-in expired; try again")
    key = twofactor.find_passkey(conn, str(credential.get("id", ""))[:512])
    if key is None:
        raise PasskeyError("this passkey is not registered here")
    if (user is not None and key.user_id != user.id) or (row.user_id is not None and row.user_id != key.user_id):
        raise PasskeyError("this passkey belongs to another user")
    if not _handle_matches(conn, key.user_id, credential):
        raise PasskeyError("this passkey belongs to another user")
    verified = _verify(
        verify_authentication_response, request, settings, credential, challenge,
        credential_public_key=bytes(key.public_key),
        credential_current_sign_count=int(key.sign_count),
        require_user_verification=purpose == "login",
    )  # fmt: skip
    found = accounts.get_user(conn, key.user_id)
    if found is None or found.disabled:
        raise PasskeyError("this passkey cannot sign in")
    twofactor.passkey_used(conn, key.id, verified.new_sign_count)
    return found


def login_binding(login_csrf: str) -> str:
    """What a sign-in challenge is bound to: the sign-in form's double-submit token (as a digest)."""
    return "login:" + accounts.digest(login_csrf)[:58]


def b64(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
