"""What the local HTTP peers (webhook receiver, Web Push service) share: a server that takes many concurrent
senders and a quiet keep-alive handler that answers in one segment."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PeerServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 drops connections under concurrent senders


class PeerHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answer in one segment: no 40 ms delayed-ACK stalls on keep-alive
    wbufsize = 1 << 16

    def log_message(self, format: str, *args: Any) -> None:
        pass
