"""Peer-certificate facts (expiry, subject, issuer) read from a live TLS connection, verified or not."""

from __future__ import annotations

import datetime as dt
import ssl
from typing import Any

from cryptography import x509

from agents.net_common import clean_text


def certificate_facts(der: bytes, now: dt.datetime | None = None) -> tuple[float, dict[str, Any]]:
    """Return (days left until notAfter, facts) for a DER certificate; ValueError if it cannot be parsed."""
    cert = x509.load_der_x509_certificate(der)
    not_after = cert.not_valid_after_utc
    moment = now or dt.datetime.now(dt.UTC)
    days_left = (not_after - moment).total_seconds() / 86400.0
    facts: dict[str, Any] = {
        "tls_subject": clean_text(cert.subject.rfc4514_string()),
        "tls_issuer": clean_text(cert.issuer.rfc4514_string()),
        "tls_not_after": not_after.isoformat(),
    }
    return days_left, facts


def peer_certificate_der(ssl_object: Any) -> bytes | None:
    """Return the peer's certificate (DER) from an SSLObject/SSLSocket; present even when unverified."""
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    try:
        der = ssl_object.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):  # connection already shut down
        return None
    return der or None


def ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """Build a client context: system/certifi trust (or ca_file), or no verification at all (blocking I/O)."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    import certifi  # httpx's own default trust store

    return ssl.create_default_context(cafile=certifi.where())
