"""Real HTTP and HTTPS servers on 127.0.0.1 for collector tests (stdlib server, cryptography certificates)."""

from __future__ import annotations

import datetime as dt
import functools
import gzip
import ipaddress
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

OK_BODY = b"pocketnoc-ok"
BIG_BYTES = 50 * 1024 * 1024
SLOW_SECONDS = 30.0
HOSTILE_BODY = (
    b"<html><script>alert('x')</script>\x1b[2J\x1b]0;owned\x07\x00\xff\xfe\xc3\x28"
    b"<img src=x onerror=alert(1)>pocketnoc-hostile</html>"
)
HOSTILE_SERVER_HEADER = b"<script>alert(1)</script>\xff\xfe\xc3\x28 evil"


@dataclass
class HttpPeer:
    """A running plain-HTTP test server."""

    base_url: str
    stop: Callable[[], None]


@dataclass
class HttpsPeer:
    """A running HTTPS test server with a self-signed certificate (also its own CA file)."""

    base_url: str
    cert_pem_path: str
    stop: Callable[[], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    tls: ssl.SSLContext | None = None
    stopping: threading.Event

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Handshake in the per-connection thread so a stuck client cannot block accept().
        if self.tls is not None:
            request.settimeout(10)
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up mid-body and refuse certificates on purpose in these tests


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 1 << 20))
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/ok":
            self._send(200, OK_BODY)
        elif path.startswith("/status/") and path[8:].isdigit() and 200 <= int(path[8:]) <= 599:
            self._send(int(path[8:]), f"status {path[8:]}".encode())
        elif path == "/slow":
            self.server.stopping.wait(SLOW_SECONDS)
            self._send(200, b"slow")
        elif path == "/redirect":
            self._send(302, b"", {"Location": "/ok"})
        elif path == "/redirect-loop":
            self._send(302, b"", {"Location": "/redirect-loop"})
        elif path == "/redirect-metadata":
            self._send(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        elif path == "/redirect-decimal":
            self._send(302, b"", {"Location": "http://2852039166/latest/meta-data/"})
        elif path == "/redirect-file":
            self._send(302, b"", {"Location": "file:///etc/passwd"})
        elif path == "/big":
            self._big()
        elif path == "/hostile":
            self._hostile()
        elif path == "/hostile-header":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Evil: \x1b[31mred\x00\r\nContent-Length: 2\r\n\r\nok")
        elif path == "/redos":  # the input that makes `^(a+)+$` backtrack for seconds in Python's re
            self._send(200, b"a" * 28 + b"!")
        elif path == "/gzip-bomb":
            self._send(200, gzip_bomb(), {"Content-Encoding": "gzip"})
        elif path == "/set-cookie":
            self._send(302, b"", {"Set-Cookie": "session=secret; Path=/", "Location": "/echo-headers"})
        elif path == "/echo-headers":
            self._send(200, "\n".join(f"{k}: {v}" for k, v in self.headers.items()).encode())
        else:
            self._send(404, b"not found")

    def _big(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BIG_BYTES))
        self.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(BIG_BYTES // len(chunk)):
                if self.server.stopping.is_set():
                    break
                self.wfile.write(chunk)
        except OSError:
            pass  # the client stopped reading, which is the point
        self.close_connection = True

    def _hostile(self) -> None:
        head = (
            b"HTTP/1.1 200 OK\r\nServer: " + HOSTILE_SERVER_HEADER + b"\r\n"
            b"Content-Type: text/html\r\nX-Evil: \x80\x81<b>\r\n"
            b"Content-Length: " + str(len(HOSTILE_BODY)).encode() + b"\r\n\r\n"
        )
        self.wfile.write(head + (HOSTILE_BODY if self.command != "HEAD" else b""))


@functools.cache
def gzip_bomb() -> bytes:
    """About 20 KB of gzip that inflates to 20 MB of zeros."""
    return gzip.compress(bytes(20 * 1024 * 1024), compresslevel=9)


def _serve(tls: ssl.SSLContext | None) -> tuple[_Server, Callable[[], None]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.tls = tls
    server.stopping = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()

    def stop() -> None:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return server, stop


def start_http_server() -> HttpPeer:
    """Start a plain HTTP server on 127.0.0.1:<free port>."""
    server, stop = _serve(None)
    return HttpPeer(f"http://127.0.0.1:{server.server_address[1]}", stop)


def make_self_signed(directory: Path, days_valid: float) -> tuple[Path, Path]:
    """Write a self-signed cert for localhost/127.0.0.1/::1 that expires days_valid days from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days_valid)
    not_before = min(now - dt.timedelta(days=1), not_after - dt.timedelta(days=30))
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pocketnoc tests"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def start_https_server(days_valid: float = 5) -> HttpsPeer:
    """Start an HTTPS server whose self-signed cert expires in days_valid days (negative: expired)."""
    directory = Path(tempfile.mkdtemp(prefix="pocketnoc-https-"))
    cert_path, key_path = make_self_signed(directory, days_valid)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server, stop_server = _serve(context)

    def stop() -> None:
        stop_server()
        shutil.rmtree(directory, ignore_errors=True)

    return HttpsPeer(f"https://127.0.0.1:{server.server_address[1]}", str(cert_path), stop)


def closed_port() -> int:
    """Return a loopback port with nothing listening (bound then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
