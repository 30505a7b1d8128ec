"""A local Web Push service: hands out subscriptions, verifies the VAPID JWT (RFC 8292), decrypts aes128gcm (RFC 8291).

Like a real push service it answers 201 Created, and can be told to answer 410 Gone, 429 with Retry-After, or 500.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.peers.httpbase import PeerHandler, PeerServer


def b64d(text: str) -> bytes:
    """Decode unpadded base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(data: bytes) -> str:
    """Encode unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Pushed:
    """One push message as the service saw it."""

    sub_id: str
    ts: float
    headers: dict[str, str]
    status: int
    payload: Any = None
    claims: dict[str, Any] = field(default_factory=dict)
    vapid_key: str = ""
    error: str = ""


@dataclass
class _Sub:
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes


class VapidError(Exception):
    """The Authorization header does not carry a valid VAPID JWT for this service."""


def verify_vapid(header: str, audience: str, now: float) -> tuple[dict[str, Any], str]:
    """Check `vapid t=JWT, k=KEY`: ES256 signature by k, aud = this origin, exp in the next 24 h, sub set."""
    if not header.lower().startswith("vapid "):
        raise VapidError("not a vapid authorization")
    parts = dict(p.strip().split("=", 1) for p in header[6:].split(",") if "=" in p)
    token, key = parts.get("t", ""), parts.get("k", "")
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        head = json.loads(b64d(head_b64))
        claims = json.loads(b64d(claims_b64))
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64d(key))
        sig = b64d(sig_b64)
    except ValueError as exc:
        raise VapidError(f"malformed: {exc}") from None
    if head.get("alg") != "ES256" or len(sig) != 64:
        raise VapidError("not ES256")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError("bad signature") from None
    if claims.get("aud") != audience:
        raise VapidError(f"aud {claims.get('aud')!r} is not {audience!r}")
    exp = int(claims.get("exp", 0))
    if not now < exp <= now + 24 * 3600 + 60:
        raise VapidError("exp is not within the next 24 hours")
    sub = str(claims.get("sub", ""))
    if not (sub.startswith("mailto:") or sub.startswith("https://")):
        raise VapidError("sub is not a mailto: or https: contact")
    return claims, key


class _Server(PeerServer):
    owner: PushService


class _Handler(PeerHandler):
    server: _Server

    def do_POST(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 8192)) if length else b""
        sub_id = self.path.rsplit("/", 1)[-1]
        item = Pushed(sub_id, time.time(), {k.lower(): v for k, v in self.headers.items()}, 201)
        status, extra = owner.process(item, body)
        item.status = status
        with owner.lock:
            owner.received.append(item)
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class PushService:
    """Runs on 127.0.0.1; `subscribe()` returns a PushSubscription.toJSON()-shaped dict pointing here."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self.subs: dict[str, _Sub] = {}
        self.received: list[Pushed] = []
        self.lock = threading.Lock()
        self.scripted: list[tuple[int, dict[str, str]]] = []
        self.gone: set[str] = set()
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.owner = self
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def subscribe(self) -> dict[str, Any]:
        """A new subscription: a fresh P-256 key pair and 16-byte auth secret held by this 'browser'."""
        sub_id = secrets.token_urlsafe(12)
        key = ec.generate_private_key(ec.SECP256R1())
        auth = os.urandom(16)
        self.subs[sub_id] = _Sub(key, auth)
        public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": f"{self.origin}/push/{sub_id}", "keys": {"p256dh": b64e(public), "auth": b64e(auth)}}

    def answer(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next `times` pushes with this status (and Retry-After)."""
        extra = {"Retry-After": retry_after} if retry_after is not None else {}
        with self.lock:
            self.scripted += [(status, extra)] * times

    def forget(self, endpoint: str) -> None:
        """The browser unsubscribed: the endpoint answers 410 Gone from now on."""
        self.gone.add(endpoint.rsplit("/", 1)[-1])

    def process(self, item: Pushed, body: bytes) -> tuple[int, dict[str, str]]:
        """Verify, decrypt, and pick the answer."""
        sub = self.subs.get(item.sub_id)
        if sub is None or item.sub_id in self.gone:
            item.error = "no such subscription"
            return 410, {}
        with self.lock:
            scripted = self.scripted.pop(0) if self.scripted else None
        try:
            item.claims, item.vapid_key = verify_vapid(item.headers.get("authorization", ""), self.origin, time.time())
        except VapidError as exc:
            item.error = f"vapid: {exc}"
            return 401, {}
        if item.headers.get("content-encoding") != "aes128gcm" or "ttl" not in item.headers:
            item.error = "missing Content-Encoding: aes128gcm or TTL"
            return 400, {}
        try:
            plain = http_ece.decrypt(body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm")
            item.payload = json.loads(plain)
        except Exception as exc:  # any decryption failure is the sender's bug: report it
            item.error = f"decrypt: {type(exc).__name__}: {exc}"
            return 400, {}
        if scripted is not None:
            return scripted
        return 201, {"Location": f"{self.origin}/message/{secrets.token_hex(6)}"}

    def items(self, predicate: Callable[[Pushed], bool] = lambda _p: True) -> list[Pushed]:
        """Pushes so far, filtered."""
        with self.lock:
            return [p for p in self.received if predicate(p)]

    def wait_for(self, count: int, predicate: Callable[[Pushed], bool] = lambda _p: True, timeout: float = 60) -> list[Pushed]:
        """Wait until `count` matching pushes arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.items(predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} pushes, got {len(found)}: {[(p.status, p.error) for p in self.items()]}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Shut the service down."""
        self._server.shutdown()
        self._server.server_close()


def start_push_service() -> PushService:
    """A running push service on 127.0.0.1."""
    return PushService()
