"""A local HTTP receiver for webhooks, Apprise json:// and ntfy://: records every request; can fail, hang or go down."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.peers.httpbase import PeerHandler, PeerServer


@dataclass
class Received:
    """One request as the receiver saw it, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    ts: float
    status: int = 0

    @property
    def json(self) -> Any:
        """The body parsed as JSON (None when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Behaviour:
    """How the receiver answers: a status (and Retry-After) after `delay` seconds, or hang (status 0: never answered)."""

    status: int = 200
    retry_after: str | None = None
    hang: bool = False
    delay: float = 0.0
    released: threading.Event = field(default_factory=threading.Event)


class _Server(PeerServer):
    owner: Receiver


class _Handler(PeerHandler):
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 10 * 1024 * 1024)) if length else b""
        owner = self.server.owner
        item = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
        behaviour = owner.behaviour
        with owner.lock:
            owner.received.append(item)
        if behaviour.hang:  # never answer: the sender must treat the message as not delivered
            behaviour.released.wait(120)
            self.close_connection = True
            return
        if behaviour.delay:  # a slow service: the answer comes, late
            behaviour.released.wait(behaviour.delay)
        item.status = behaviour.status
        answer = b'{"ok": true}' if 200 <= behaviour.status < 300 else b'{"error": "refused by the test receiver"}'
        self.send_response(behaviour.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if behaviour.retry_after is not None:
            self.send_header("Retry-After", behaviour.retry_after)
        self.end_headers()
        self.wfile.write(answer)

    do_POST = _handle
    do_PUT = _handle
    do_GET = _handle


class Receiver:
    """An HTTP server on 127.0.0.1 that can be taken down and brought back on the same port."""

    def __init__(self, port: int = 0) -> None:
        self.port = port or _free_port()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.behaviour = Behaviour()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        """Listen (again) on the port."""
        deadline = time.monotonic() + 30
        while True:
            try:
                server = _Server(("127.0.0.1", self.port), _Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        server.owner = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port: senders get connection refused."""
        self.behaviour.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer(self, status: int = 200, retry_after: str | None = None, hang: bool = False, delay: float = 0.0) -> None:
        """Change how the receiver answers from now on (requests hanging or delayed under the old behaviour go on)."""
        self.behaviour.released.set()
        self.behaviour = Behaviour(status, retry_after, hang, delay)

    def items(self, predicate: Callable[[Received], bool] = lambda _r: True) -> list[Received]:
        """What was received so far, filtered."""
        with self.lock:
            return [r for r in self.received if predicate(r)]

    def wait_for(
        self, count: int, predicate: Callable[[Received], bool] = lambda _r: True, timeout: float = 60
    ) -> list[Received]:
        """Wait until at least `count` matching requests arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.items(predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {len(found)}: {[r.path for r in found]}")
            time.sleep(0.02)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_receiver(port: int = 0) -> Receiver:
    """A running receiver on 127.0.0.1."""
    return Receiver(port).start()
