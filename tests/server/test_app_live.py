"""Live updates: the SSE stream itself, and a phone page that changes when a real snmpd goes away and comes back."""

from __future__ import annotations

import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from server.config.loader import load_config
from server.config.settings import Settings
from server.web import live as live_module
from tests import sql
from tests.peers.snmpd import SnmpdPeer, start_snmpd
from tests.server.app_browser import live, phone, playwright_browser, session_cookie, shot, sign_in, wait_for
from tests.server.app_fleet import LiveServer, build_fleet, free_port, serve


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    peer = start_snmpd(tmp_path)
    yield peer
    peer.stop()


class Stream:
    """Reads an SSE stream on a thread and keeps its events (name, data) in order."""

    def __init__(self, url: str, cookie: str) -> None:
        self.events: list[tuple[str, Any]] = []
        self.ended = threading.Event()
        self.headers: dict[str, str] = {}
        self._thread = threading.Thread(target=self._read, args=(url, cookie), daemon=True)
        self._thread.start()

    def _read(self, url: str, cookie: str) -> None:
        try:
            with httpx.stream("GET", url + "/live", cookies={"pn_session": cookie}, timeout=httpx.Timeout(60, read=120)) as r:
                self.headers = dict(r.headers)
                name = "message"
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        self.events.append((name, json.loads(line[5:].strip())))
                        name = "message"
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def wait(self, name: str, timeout: float = 30.0, where: Any = None) -> Any:
        """The first event called `name` (matching `where`), waiting for it."""

        def found() -> Any:
            return next((d for n, d in self.events if n == name and (where is None or where(d))), None)

        return wait_for(found, timeout, f"a {name} event")


def test_the_stream_says_hello_announces_changes_and_ends_with_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_module, "SESSION_CHECK_SECONDS", 1.0)
    monkeypatch.setattr(live_module, "POLL_SECONDS", 0.5)  # how often the broker looks for changes nobody announced (3 s)
    with serve(Settings(data_dir=tmp_path / "data")) as server:
        fleet = build_fleet(server.svc.engine, server.svc.box, devices=60, alerts=3)
        server.user("op", "operator")
        cookie = session_cookie(server.url, "op")
        assert httpx.get(server.url + "/live", follow_redirects=False).status_code == 303, "signed in only"
        stream = Stream(server.url, cookie)
        stream.wait("hello")
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in stream.headers, "an event stream is never buffered by compression"
        with httpx.Client(base_url=server.url, cookies={"pn_session": cookie}) as client:
            page = client.get("/").text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert csrf
            client.post(f"/alerts/{fleet.alerts[0]}/ack", data={"csrf_token": csrf.group(1), "back": "/"})
            change = stream.wait("change", where=lambda d: any(a["id"] == fleet.alerts[0] for a in d["alerts"]))
            assert change["alerts"][0]["kind"] == "acknowledged" and change["devices"] == []
            client.post("/logout", data={"csrf_token": csrf.group(1)})
        stream.wait("bye", timeout=20)
        assert stream.ended.wait(10), "the stream ends when the session ends"
        assert not live_module.broker(server.svc).subscribers


def test_stopping_the_server_ends_open_streams_at_once(tmp_path: Path) -> None:
    with serve(Settings(data_dir=tmp_path / "data")) as server:
        server.user("op", "viewer")
        streams = [Stream(server.url, session_cookie(server.url, "op")) for _ in range(3)]
        for stream in streams:
            stream.wait("hello")
        started = time.monotonic()
        server.stop()
        for stream in streams:
            assert stream.ended.wait(10)
        assert time.monotonic() - started < 4, "ended when asked, not cut after the 5 s grace period"
        assert all(not any(n == "bye" for n, _ in s.events) for s in streams), "a restart is not a sign-out"


def _config(tmp_path: Path, snmpd: SnmpdPeer) -> Any:
    conf = tmp_path / "pocketnoc.yaml"
    conf.write_text(
        "settings:\n  down_after_failures: 1\n  snmp_timeout: 0.5\n  snmp_retries: 0\n  writer_batch_seconds: 0.05\n"
        "devices:\n"
        f"  - name: lab-switch\n    address: 127.0.0.1\n    interval: 5\n    tags: [lab]\n"
        f"    snmp: {{version: 2c, port: {snmpd.port}, community: {snmpd.community}}}\n"
        "  - name: lab-spare\n    address: 192.0.2.77\n    interval: 3600\n    enabled: false\n"
        "    snmp: {version: 2c, community: public}\n"
    )
    return load_config(conf)


def _state(server: LiveServer, device_id: int) -> str:
    with server.svc.reader.connect() as conn:
        return str(sql.scalar(conn, "SELECT state FROM device_status WHERE device_id = :d", d=device_id))


@pytest.mark.browser
def test_a_device_going_down_on_a_real_snmpd_appears_without_a_reload(tmp_path: Path, snmpd: SnmpdPeer) -> None:
    config = _config(tmp_path, snmpd)
    # flap_settle_seconds=0: this outage lasts seconds; the flapping guard (which would hold the alert open) has its own tests
    with serve(Settings(data_dir=tmp_path / "data", flap_settle_seconds=0, **config.settings), config, poll=True) as server:
        server.user("op", "operator")
        with server.svc.reader.connect() as conn:
            device_id = int(sql.one(conn, "SELECT id FROM devices WHERE name = :name", name="lab-switch").id)
        wait_for(lambda: _state(server, device_id) == "up", 60, "the first successful poll")
        for p, browser in playwright_browser():
            _watch_outage(p, browser, server, snmpd, device_id)


def _watch_outage(p: Playwright, browser: Browser, server: LiveServer, snmpd: SnmpdPeer, device_id: int) -> None:
    context = phone(p, browser, "iPhone 13")
    page = context.new_page()
    sign_in(page, server.url, "op")
    live(page)
    row = page.locator(f"#dev-{device_id}")
    expect(row).to_have_class("row s-up")
    for width in (360, 390):  # a device never polled (lab-spare): five state counts, still on one line, none clipped
        page.set_viewport_size({"width": width, "height": 664})
        tiles = page.locator("nav[aria-label='Devices by state'] .tile")
        expect(tiles).to_have_count(5)
        tops = {round(box["y"]) for box in (tiles.nth(i).bounding_box() for i in range(5)) if box}
        assert len(tops) == 1, f"{width} px: {tops}"
        assert page.evaluate("[...document.querySelectorAll('.tile > *')].every(e => e.scrollWidth <= e.clientWidth + 1)")
    page.evaluate("window.__stay = 1")
    detail = context.new_page()  # the device's own page, open in a second tab, follows too
    detail.goto(f"{server.url}/devices/{device_id}")
    live(detail)
    detail.evaluate("window.__stay = 1")
    expect(detail.locator(".head .badge")).to_have_text("up")
    started = time.monotonic()
    snmpd.stop()
    expect(row).to_have_class(re.compile(r"row s-(down|unreachable)"), timeout=90_000)
    seen_after = time.monotonic() - started
    expect(page.locator("[data-region=alerts] .arow").filter(has_text="lab-switch")).to_have_count(1, timeout=30_000)
    assert page.evaluate("window.__stay") == 1, "no reload: the rows changed in place"
    assert page.locator(f"#dev-{device_id}").count() == 1, "no duplicated rows"
    assert page.locator("[data-region=alerts] .arow").count() == 1
    assert page.locator("#live .ltext").inner_text() == "live"
    shot(page, "iphone-13-live-device-down", docs=True)
    expect(detail.locator(".head .badge")).to_have_text(re.compile("down|unreachable"), timeout=30_000)
    expect(detail.locator("[data-region=device-head] .arow")).to_have_count(1, timeout=30_000)
    assert detail.evaluate("window.__stay") == 1, "the device page changed in place"
    shot(detail, "iphone-13-live-device-page-down")
    detail.close()
    snmpd.start()
    expect(row).to_have_class("row s-up", timeout=90_000)
    expect(page.locator("[data-region=alerts] .arow")).to_have_count(0, timeout=30_000)
    assert page.evaluate("window.__stay") == 1
    context.close()
    assert seen_after < 80


# The page's tries to open its live stream, on the page's own clock: when each began, and whether it failed yet.
TRIES = """(() => {
  const Native = window.EventSource;
  const tries = (window.__tries = []);
  window.EventSource = class extends Native {
    constructor(url, options) {
      super(url, options);
      const mine = { at: Date.now(), failed: false };
      tries.push(mine);
      this.addEventListener("error", () => { mine.failed = true; });
    }
  };
})();"""


class StandIn:
    """Stands in for the stopped server on its port: answers every request 503 and notes each /live it is asked."""

    def __init__(self, port: int) -> None:
        self.asked: list[float] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bound() -> bool:
            try:
                self.listener.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

        wait_for(bound, 10, "the stopped server's port")
        self.listener.listen(16)
        self.listener.settimeout(0.2)
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with self.listener:
            while not self.done.is_set():
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(5)
                    request = conn.recv(4096).decode("latin-1")
                    if request.startswith("GET /live "):
                        self.asked.append(time.monotonic())
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        """Stop answering and free the port."""
        self.done.set()
        self._thread.join(10)


def _settled(page: Page) -> None:
    """Until no try of the page is still under way (its failure, and the pause it then sets, happen at the page's
    present time: the clock is not moved while a request is out)."""
    wait_for(lambda: page.evaluate("__tries.every(t => t.failed)"), 30, "the page's try to end")


def _tries_while_away(page: Page, port: int, enough: int) -> list[float]:
    """The page's clock stands still, a stand-in answers 503 on the server's port, and the clock is moved on in
    50 ms steps (never while a try is out) until the stand-in was asked `enough` times: when (page time, ms) each
    of those tries began."""
    page.clock.pause_at(page.evaluate("Date.now()") + 1000)  # a moment ahead: never in its past, however slow the call
    _settled(page)
    stand_in = StandIn(port)
    try:
        before = page.evaluate("__tries.length")
        deadline = time.monotonic() + 60
        while len(stand_in.asked) < enough:
            assert time.monotonic() < deadline, f"the page stopped trying: {page.evaluate('__tries')}"
            page.clock.run_for(50)
            _settled(page)
        tries: list[float] = [t["at"] for t in page.evaluate("__tries")[before:]]
        assert len(tries) == len(stand_in.asked), "every try of the page reached the server's port"
    finally:
        stand_in.close()
    page.clock.resume()
    return [at / 1000 for at in tries]


@pytest.mark.browser
def test_the_indicator_says_reconnecting_while_the_server_is_away_and_live_when_it_is_back(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)
    port = free_port()
    with serve(settings, port=port) as server:
        build_fleet(server.svc.engine, server.svc.box, devices=40, alerts=2)
        server.user("op", "operator")
        for p, browser in playwright_browser():
            context = phone(p, browser, "Pixel 7")
            context.clock.install()  # the back-off's pauses pass on the page's clock (time flows until paused)
            context.add_init_script(TRIES)
            page = context.new_page()
            sign_in(page, server.url, "op")
            live(page)
            page.evaluate("window.__stay = 1")
            server.stop()
            live(page, "reconnecting")
            expect(page.locator("#stale")).to_contain_text("No connection to the server", timeout=30_000)
            shot(page, "pixel-7-reconnecting")
            tries = _tries_while_away(page, port, enough=3)
            gaps = [b - a for a, b in itertools.pairwise(tries)]
            assert len(gaps) >= 2, f"the page kept trying: {tries}"
            assert gaps[0] > 1.4, f"no hammering of a server that is away: {gaps}"
            assert all(b > a * 1.15 for a, b in itertools.pairwise(gaps)), f"the pauses grow: {gaps}"
            with serve(settings, port=port) as again:
                with again.svc.engine.begin() as conn:
                    from server.store.alerts import acknowledge

                    acknowledge(conn, 1, "someone-else", "while you were away")
                page.clock.fast_forward(30_000)  # the longest pause there is: the retry after it finds the new server
                live(page, timeout=60)
                expect(page.locator("#stale")).to_be_hidden()
                expect(page.locator("[data-region=alerts] .arow").filter(has_text="ack someone-else")).to_have_count(1)
                assert page.evaluate("window.__stay") == 1, "caught up without a reload"
            context.close()
