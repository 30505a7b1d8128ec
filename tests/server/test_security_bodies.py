"""Request bodies are measured before anything parses them: 413 over max_body_bytes, 400 over max_json_depth."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server.config.settings import Settings
from server.web.limits import json_depth_over
from tests.server.app_fleet import free_port, stop_process, wait_healthy
from tests.server.conftest import AppEnv, bearer, make_app_env
from tests.server.test_security_routes import app_routes

HUGE = 200 * 1024 * 1024
CHUNK = b"x" * (256 * 1024)
DEEP = b"[" * 5000 + b"]" * 5000


@dataclass
class Served:
    port: int
    pid: int

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The app in a process of its own behind uvicorn, as in production (default limits)."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    data = tmp_path_factory.mktemp("bodies")
    proc = subprocess.Popen([sys.executable, "-m", "tests.server.app_fleet", str(data), str(port)], cwd=root)
    try:
        wait_healthy(f"http://localhost:{port}", proc)
        yield Served(port, proc.pid)
    finally:
        stop_process(proc)


def push_until_answered(port: int, head: bytes, chunked: bool) -> tuple[int, bytes]:
    """Send `head` then up to 200 MB of body until the server answers; (body bytes sent, the answer)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(head)
        deadline = time.monotonic() + 60
        while sent < HUGE and time.monotonic() < deadline:
            readable, writable, _ = select.select([conn], [conn], [], 1.0)
            if readable:
                break
            if writable:
                piece = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK
                try:
                    sent += conn.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
        answer = b""
        try:
            while len(answer) < 65536 and (data := conn.recv(65536)):
                answer += data
        except (ConnectionResetError, TimeoutError):
            pass
    return sent, answer


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_unauthenticated_200_mb_post_is_refused_413_without_being_read(served: Served, framing: str) -> None:
    before = served.rss_kib()
    length = f"Content-Length: {HUGE}" if framing == "content-length" else "Transfer-Encoding: chunked"
    head = f"POST /api/v1/devices HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{length}\r\n\r\n".encode()
    sent, answer = push_until_answered(served.port, head, chunked=framing == "chunked")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"larger than 1 MiB" in answer and b"max_body_bytes" in answer
    assert sent < 64 * 1024 * 1024, f"the client could push {sent} bytes before the answer"
    assert served.rss_kib() - before < 32 * 1024, "the server's memory grew with the refused body"


def test_a_chunked_form_post_is_counted_as_it_streams_and_refused_with_a_page(served: Served) -> None:
    """No Content-Length to precheck: the stream itself is counted, and a page (not JSON) says why."""
    head = b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    head += b"Transfer-Encoding: chunked\r\n\r\n"
    _sent, answer = push_until_answered(served.port, head, chunked=True)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"text/html" in answer and b"Request too large" in answer


@pytest.fixture
def small(tmp_path: Path) -> Iterator[AppEnv]:
    yield from make_app_env(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, max_body_bytes=4096))


def test_the_limit_is_a_setting_and_applies_before_sign_in(small: AppEnv) -> None:
    body = b'{"name": "' + b"a" * 5000 + b'"}'
    anonymous = small.client.post("/api/v1/devices", content=body, headers={"Content-Type": "application/json"})
    assert anonymous.status_code == 413 and "larger than 4 KiB" in anonymous.json()["detail"]
    token = small.token("ada", "admin")
    signed_in = small.client.post("/api/v1/devices", content=body, headers={"Content-Type": "application/json", **bearer(token)})
    assert signed_in.status_code == 413
    fits = small.client.post("/api/v1/devices", json={"name": "r1", "address": "192.0.2.1"}, headers=bearer(token))
    assert fits.status_code == 201, fits.text


def body_routes(env: AppEnv) -> list[tuple[str, str]]:
    """Every (method, path) of the app that takes a body, with path parameters filled in."""
    found = []
    for route in app_routes(env.app):
        for method in sorted(route.methods & {"POST", "PUT", "PATCH"}):
            found.append((method, route.path.replace("{", "").replace("}", "")))
    return found


def test_a_5000_deep_json_body_is_400_in_words_on_every_route(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    routes = body_routes(app_env)
    assert ("POST", "/api/v1/actions/action_id/preview") in routes and ("POST", "/api/v1/actions/action_id/run") in routes
    for method, path in routes:
        for headers in ({}, bearer(token)):
            response = app_env.client.request(method, path, content=DEEP, headers={"Content-Type": "application/json", **headers})
            assert response.status_code == 400, (method, path, response.status_code, response.text[:200])
            assert "nested deeper than 64 levels" in response.text


def test_depth_counts_brackets_outside_strings_only(app_env: AppEnv) -> None:
    token = app_env.token("ada", "admin")
    name = "[" * 100  # inside a string: no nesting at all
    response = app_env.client.post("/api/v1/devices", json={"name": name, "address": "192.0.2.1"}, headers=bearer(token))
    assert response.status_code == 422, response.text
    nested = {"name": "r1", "address": "192.0.2.1", "tags": [[[["x"]]]]}
    assert app_env.client.post("/api/v1/devices", json=nested, headers=bearer(token)).status_code == 422


@pytest.mark.parametrize(
    ("body", "over"),
    [
        (b"[" * 65 + b"]" * 65, True),
        (b"[" * 64 + b"]" * 64, False),
        (b'{"a": "' + b"[" * 200 + b'"}', False),
        (b'{"a": "\\"' + b"[" * 200 + b'"}', False),
        (b'{"a": "\\\\"' + b", " + b"[" * 65 + b"]" * 65 + b"}", True),
        (b"{" * 40 + b"[" * 40, True),
    ],
    ids=["65-deep", "64-deep", "brackets-in-a-string", "after-an-escaped-quote", "after-an-escaped-backslash", "mixed"],
)
def test_json_depth_is_measured_outside_strings(body: bytes, over: bool) -> None:
    assert json_depth_over(body, 64) is over
