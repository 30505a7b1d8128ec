"""Shared by the push browser tests and `bench.oncall`: the app served with a local push service, a phone-sized
Chromium, a fake PushManager (the one fake: the browser's own push service is out of reach), signing in as the operator
"pat", and Chromium's real service worker: its registration, a push delivered over CDP and the notifications shown.
The fixtures over these (push_served, push_browser) are in conftest.py."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, CDPSession, Page, Worker, sync_playwright

from server.auth import passwords
from server.config.settings import Settings
from server.runtime import Services
from tests.peers.webpush_service import PushService, start_push_service
from tests.server.app_fleet import BROWSER_ARGS, CHROMIUM, serve
from tests.server.conftest import PASSWORD
from tests.server.notify_helpers import FAST, wait_until

# PushManager backed by a subscription at the local push service; it remembers the applicationServerKey it was given.
FAKE_PUSH_MANAGER = """(() => {
  const sub = SUBSCRIPTION;
  const b64 = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/[+]/g, "-").replace(/[/]/g, "_")
    .replace(/=+$/, "");
  const current = () => {
    const key = localStorage.getItem("pn-fake-key");
    if (!key) return null;
    return {endpoint: sub.endpoint, options: {applicationServerKey: Uint8Array.from(atob(key.replace(/-/g, "+")
      .replace(/_/g, "/") + "==".slice(0, (4 - key.length % 4) % 4)), (c) => c.charCodeAt(0)).buffer},
      toJSON: () => ({endpoint: sub.endpoint, expirationTime: null, keys: sub.keys}),
      unsubscribe: async () => { localStorage.removeItem("pn-fake-key"); return true; }};
  };
  PushManager.prototype.subscribe = async function (options) {
    localStorage.setItem("pn-fake-key", b64(options.applicationServerKey));
    return current();
  };
  PushManager.prototype.getSubscription = async function () { return current(); };
})();"""


@dataclass
class Served:
    """The app (worker running) served by uvicorn; reached as http://localhost:PORT, a secure context."""

    url: str
    svc: Services
    push: PushService


@contextmanager
def serve_with_push(tmp_path: Path) -> Iterator[Served]:
    """The app with polling and the notify worker on, user pat (operator), and a local push service."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing (make test installs it)")
    (tmp_path / "channels.yaml").write_text(FAST)
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, channels_file=tmp_path / "channels.yaml")
    with serve(settings, poll=True) as live:
        with live.svc.engine.begin() as conn:
            passwords.create_user(conn, "pat", "operator", PASSWORD)
        push = start_push_service()
        try:
            yield Served(live.url, live.svc, push)
        finally:
            push.stop()


@contextmanager
def phone_browser() -> Iterator[tuple[BrowserContext, Page]]:
    """Headless Chromium with a Pixel 7's viewport: its context and one page."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        context = chromium.new_context(**p.devices["Pixel 7"])
        context.set_default_timeout(30_000)
        yield context, context.new_page()
        chromium.close()


def sign_in_page(page: Page, url: str) -> None:
    """Sign in as pat through the login form."""
    page.goto(url + "/login")
    page.fill("input[name=username]", "pat")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(url + "/")


def service_worker(context: BrowserContext, page: Page) -> Worker:
    state = page.evaluate("navigator.serviceWorker.ready.then(r => r.active.state)")
    assert state in ("activating", "activated")
    return wait_until(lambda: context.service_workers[0] if context.service_workers else None, what="the service worker")


def registration_id(cdp: CDPSession, page: Page, scope: str) -> str:
    found: dict[str, str] = {}
    seen: list[Any] = []

    def on_update(event: dict[str, Any]) -> None:
        for reg in event.get("registrations", []):
            seen.append(reg)
            if reg.get("scopeURL") == scope and not reg.get("isDeleted"):
                found["id"] = reg["registrationId"]

    cdp.on("ServiceWorker.workerRegistrationUpdated", on_update)
    cdp.send("ServiceWorker.enable")
    deadline = time.monotonic() + 30
    while "id" not in found:
        assert time.monotonic() < deadline, f"no registration for {scope}: {seen}"
        page.wait_for_timeout(50)  # the sync API delivers CDP events only while it waits
    return found["id"]


def wait_for_notification(page: Page, worker: Worker, tag: str, deliver: Callable[[], Any]) -> dict[str, Any]:
    """Deliver a push and wait for its notification. A delivery can fall between a service worker that Chromium
    stopped and the one it starts (seen on a loaded machine): delivered again after 10 s (the tag makes it one)."""
    deadline = time.monotonic() + 40
    again = time.monotonic() + 10
    deliver()
    while True:
        found = [n for n in notifications(worker) if n["tag"] == tag]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no notification tagged {tag}: {notifications(worker)}"
        if time.monotonic() > again:
            deliver()
            again = time.monotonic() + 10
        page.wait_for_timeout(100)


def notifications(worker: Worker) -> list[dict[str, Any]]:
    return list(worker.evaluate(
        "self.registration.getNotifications().then(ns => ns.map(n => ({title: n.title, body: n.body, tag: n.tag,"
        " actions: n.actions.map(a => a.action), data: n.data})))"))
