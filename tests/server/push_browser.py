"""Shared by the push browser tests: the app served with a local push service, a phone-sized Chromium, a fake
PushManager and signing in as the operator "pat". The fixtures over these (push_served, push_browser) are in conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from server.auth import access as auth
from server.config.settings import Settings
from server.runtime import Services
from tests.peers.webpush_service import PushService, start_push_service
from tests.server.app_fleet import BROWSER_ARGS, CHROMIUM, serve
from tests.server.conftest import PASSWORD
from tests.server.notify_helpers import FAST

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
            auth.create_user(conn, "pat", "operator", PASSWORD)
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
