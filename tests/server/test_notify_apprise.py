"""Apprise sends judged by their last request, and redirects checked hop by hop against a local HTTP service."""

from __future__ import annotations

import contextlib
import http.server
import socket
import sys
import threading
from collections.abc import Iterator

import pytest
import requests.adapters

from server.notify.channels.apprise_channel import AppriseChannel
from server.notify.message import Note


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _redirecting(final: str | int, location: str) -> Iterator[int]:
    """A local HTTP service answering POST /hook with 307 to `location`, and `final` at /final; its port."""

    class Hop(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/hook":
                self.send_response(307)
                self.send_header("Location", location)
            else:
                self.send_response(int(final))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hop)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


NOTE = Note("trigger", "sw1 is down", "sw1 is down", "<p>sw1 is down</p>", "critical", "a1-e1", "", {})


@pytest.mark.parametrize("final", ["no answer", 400, 503])
def test_an_apprise_send_is_judged_by_its_last_request_not_a_redirect_before_it(final: str | int) -> None:
    """A redirect followed by a connection failure is a retry, not a dead letter; the last answer decides."""
    location = f"http://127.0.0.1:{_closed_port()}/gone" if final == "no answer" else "/final"
    with _redirecting(final, location) as port:
        outcome = AppriseChannel(f"json://127.0.0.1:{port}/hook", allow_unsafe=True)._send_sync(NOTE, 5.0)
    assert not outcome.ok
    assert outcome.permanent is (final == 400), outcome  # only a refusal of the last request is permanent
    if final != "no answer":
        assert outcome.status == f"apprise error={final}"


def test_an_apprise_redirect_to_a_refused_address_is_not_followed() -> None:
    """The first host is checked before sending; a redirect hop to an address the policy refuses is refused too."""
    location = f"http://0.0.0.0:{_closed_port()}/latest/meta-data"  # refused: the unspecified address
    with _redirecting(200, location) as port:
        refused = AppriseChannel(f"json://127.0.0.1:{port}/hook")._send_sync(NOTE, 5.0)
        allowed = AppriseChannel(f"json://127.0.0.1:{port}/hook", allow_unsafe=True)._send_sync(NOTE, 5.0)
    assert refused.status == "refused" and refused.permanent and "unspecified" in refused.detail, refused
    assert allowed.status != "refused" and not allowed.permanent, allowed  # followed, then no answer: a retry


def test_watching_an_apprise_send_patches_nothing_and_stays_on_its_thread() -> None:
    """requests is not patched; the address check applies to the sending thread only, during its send."""
    assert requests.adapters.HTTPAdapter.send.__module__ == "requests.adapters"
    assert requests.adapters.HTTPAdapter.send.__qualname__ == "HTTPAdapter.send"
    location = f"http://0.0.0.0:{_closed_port()}/latest/meta-data"
    with _redirecting(200, location) as port:
        assert AppriseChannel(f"json://127.0.0.1:{port}/hook")._send_sync(NOTE, 5.0).status == "refused"
        with socket.create_connection(("0.0.0.0", port), timeout=5):  # outside a send nothing is refused
            pass
    assert sys.getprofile() is None
