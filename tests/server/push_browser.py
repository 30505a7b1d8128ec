"""Chromium's real service worker and a push from the local Web Push service: the fake PushManager (the one fake:
the browser's own push service is out of reach), the registration, delivery over CDP and the notifications shown."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from playwright.sync_api import BrowserContext, CDPSession, Page, Worker

from tests.server.notify_helpers import wait_until

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
