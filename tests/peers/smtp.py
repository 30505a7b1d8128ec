"""aiosmtpd on loopback: plain, STARTTLS (required) or implicit TLS, optional AUTH; keeps every message it accepts."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

USER = "alerts"
PASSWORD = "smtp-secret-pw"


@dataclass
class Mail:
    """One accepted message."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    ts: float


class _Handler:
    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.peer.reply_data is not None:
            return self.peer.reply_data
        message = message_from_bytes(envelope.content, policy=default)
        assert isinstance(message, EmailMessage)
        with self.peer.lock:
            # STARTTLS sets session.ssl; implicit TLS shows only on the transport
            tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
            self.peer.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, tls, time.time()))
        return "250 OK queued"


def _authenticate(_server: Any, _session: Any, _envelope: Any, _mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
    return AuthResult(success=ok)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (it is also the CA file to trust)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pocketnoc test smtp")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class SmtpPeer:
    """mode: "plain", "starttls" (required before MAIL) or "tls" (implicit); auth=True requires AUTH LOGIN/PLAIN."""

    def __init__(self, directory: Path, mode: str = "starttls", auth: bool = False) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.mode = mode
        self.mails: list[Mail] = []
        self.lock = threading.Lock()
        self.reply_data: str | None = None
        self.cafile, key = make_certificate(directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cafile, key)
        params: dict[str, Any] = {}
        if auth:
            params.update(authenticator=_authenticate, auth_require_tls=mode == "starttls", auth_exclude_mechanism=["CRAM-MD5"])
        if mode == "starttls":
            params.update(tls_context=context, require_starttls=True)
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     ssl_context=context if mode == "tls" else None, server_hostname="localhost",
                                     ready_timeout=30, **params)
        self.controller.start()

    def wait_for(self, count: int, timeout: float = 60) -> list[Mail]:
        """Wait until `count` messages were accepted."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = list(self.mails)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(found)}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Shut the server down."""
        self.controller.stop()
