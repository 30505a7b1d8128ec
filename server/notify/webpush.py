"""Web Push: VAPID keys (made on first start, kept sealed in the database), payload encryption, delivery.

pywebpush encrypts (aes128gcm, RFC 8291) and py_vapid signs the JWT (RFC 8292); the POST goes through the shared
httpx client so Retry-After, 404/410 (subscription gone) and timeouts are all seen.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

from agents.safety import UnsafeTarget, parse_target
from server.keys.secretbox import SecretBox
from server.notify import http
from server.notify.channels import checked_host
from server.notify.outcome import Outcome, classify_http
from server.store.db import Engine
from server.store.notify_targets import PushSubscriptionInfo, meta_get, meta_get_or_create

META_KEY = "vapid_private_key"
GONE = frozenset({404, 410})
MAX_PAYLOAD = 3800  # bytes of JSON; push services accept 4096 after encryption overhead
_TOPIC = re.compile(r"[^A-Za-z0-9_-]")


class PushError(ValueError):
    """A subscription that cannot be accepted."""


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class VapidKeys:
    """The server's VAPID identity, with signed headers cached per push service."""

    def __init__(self, private_pem: bytes, subject: str) -> None:
        self.vapid = Vapid02.from_pem(private_pem)
        self.subject = subject
        raw = self.vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        self.public_key = b64url(raw)
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def headers(self, audience: str) -> dict[str, str]:
        """The Authorization header for a push service origin (a JWT valid 12 h, re-signed after 6 h)."""
        now = time.time()
        with self._lock:
            found = self._cache.get(audience)
            if found is not None and found[0] > now:
                return found[1]
        signed = self.vapid.sign({"aud": audience, "sub": self.subject, "exp": int(now) + 12 * 3600})
        with self._lock:
            self._cache[audience] = (now + 6 * 3600, signed)
        return dict(signed)


def load_keys(engine: Engine, box: SecretBox, subject: str) -> VapidKeys:
    """The stored VAPID key, or a new one made and sealed now (first start)."""
    with engine.begin() as conn:
        sealed = meta_get(conn, META_KEY)
        if sealed is None:  # serve processes starting together may each make one: the first one kept is used by all
            fresh = Vapid02()
            fresh.generate_keys()
            blob = box.seal({"pem": fresh.private_pem().decode()})
            sealed = meta_get_or_create(conn, META_KEY, (blob or b"").decode())
    return VapidKeys(str(box.open(sealed.encode())["pem"]).encode(), subject)


def check_subscription(endpoint: str, p256dh: str, auth: str, allow_loopback: bool = False) -> str:
    """Validate a browser's subscription; returns the push service origin.

    Browsers' push services are public https servers: an endpoint on this host, a private network or plain http is
    refused (else a subscription would make the server call internal services), unless `allow_loopback` (a local push
    service in a lab or the tests) lets http on this host through.
    """
    try:
        target = parse_target(endpoint)
    except UnsafeTarget as exc:
        raise PushError(f"endpoint refused: {exc}") from None
    parts = urlsplit(endpoint)
    loopback = target.host == "localhost" or (target.ip is not None and target.ip.is_loopback)
    if loopback and allow_loopback:
        pass
    elif parts.scheme.lower() != "https":
        raise PushError("push endpoints must be https")
    elif loopback:
        raise PushError("endpoint refused: a push service is not on this host")
    elif target.ip is not None:
        from agents.safety import check_address

        try:
            check_address(target.ip, allow_private=False)
        except UnsafeTarget as exc:
            raise PushError(f"endpoint refused: {exc}") from None
    try:
        key = _unb64(p256dh)
        secret = _unb64(auth)
    except (ValueError, TypeError):
        raise PushError("keys are not base64url") from None
    if len(key) != 65 or key[0] != 4:
        raise PushError("p256dh is not an uncompressed P-256 point")
    if len(secret) != 16:
        raise PushError("auth must be 16 bytes")
    return f"{parts.scheme.lower()}://{parts.netloc.rsplit('@', 1)[-1]}"


def topic_of(key: str) -> str:
    """A Topic header (at most 32 base64url characters): a newer message replaces an undelivered older one."""
    return _TOPIC.sub("", key)[-32:]


def _prepare(keys: VapidKeys, sub: PushSubscriptionInfo, data: bytes) -> tuple[bytes, dict[str, str]]:
    # Imported when a message is sent: pywebpush brings aiohttp (~0.7 s of CPU), which every serve and worker
    # process paid at start-up, with or without push subscriptions.
    from pywebpush import WebPusher

    pusher = WebPusher(sub)
    encoded = pusher.encode(data, "aes128gcm")
    parts = urlsplit(sub["endpoint"])
    headers = keys.headers(f"{parts.scheme}://{parts.netloc}")
    headers["Content-Encoding"] = "aes128gcm"
    headers["Content-Type"] = "application/octet-stream"
    return bytes(encoded["body"]), headers


async def send(keys: VapidKeys, sub: PushSubscriptionInfo, payload: dict[str, Any], ttl: int, urgency: str, topic: str,
               time_limit: float) -> Outcome:
    """Encrypt and POST one push message."""
    parts = urlsplit(sub["endpoint"])
    host = parts.hostname or ""
    refused = await checked_host(host, parts.port or (443 if parts.scheme == "https" else 80), False)
    if refused is not None:
        return refused
    data = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()
    if len(data) > MAX_PAYLOAD:
        return Outcome(False, "too big", f"payload of {len(data)} bytes", permanent=True)
    try:
        body, headers = await asyncio.to_thread(_prepare, keys, sub, data)
    except Exception as exc:  # a malformed stored key: this subscription can never work
        return Outcome(False, "encrypt", str(exc)[:300], permanent=True)
    headers.update({"TTL": str(ttl), "Urgency": urgency, "Topic": topic_of(topic)})
    try:
        response = await http.client().post(sub["endpoint"], content=body, headers=headers, timeout=time_limit)
    except httpx.TimeoutException:
        return Outcome(False, "timeout", f"no answer within {time_limit:.0f}s")
    except httpx.HTTPError as exc:
        return Outcome(False, "connect", type(exc).__name__)  # not the exception text: no probing through errors
    # Only the status is kept: a push service's answer body is not ours to show (and an endpoint is user input).
    return classify_http(response.status_code, response.headers.get("retry-after"), "", gone_codes=GONE)
