"""Headless Chromium with the real service worker: a push from the server arrives (via CDP) and Acknowledge works."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright
from sqlalchemy import func, select

from server.auth import access as auth
from server.config.settings import Settings
from server.notify.runtime import runtime
from server.runtime import Services
from server.store.schema import alerts, push_subscriptions
from tests.peers.webpush_service import PushService, start_push_service
from tests.server.app_fleet import BROWSER_ARGS, CHROMIUM, serve
from tests.server.conftest import PASSWORD
from tests.server.notify_helpers import FAST, add_device, fire, wait_until
from tests.server.push_browser import FAKE_PUSH_MANAGER, notifications, registration_id, service_worker, wait_for_notification

pytestmark = pytest.mark.browser
@dataclass
class Served:
    """The app (worker running) served by uvicorn; reached as http://localhost:PORT, a secure context."""

    url: str
    svc: Services
    push: PushService


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
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


@pytest.fixture
def browser() -> Iterator[tuple[BrowserContext, Page]]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        context = chromium.new_context(**p.devices["Pixel 7"])
        context.set_default_timeout(30_000)
        yield context, context.new_page()
        chromium.close()


def _sign_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", "pat")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(url + "/")


def test_acknowledge_from_a_pushed_notification(served: Served, browser: tuple[BrowserContext, Page]) -> None:
    context, page = browser
    context.grant_permissions(["notifications"], origin=served.url)
    _sign_in(page, served.url)
    # The browser's own push service (FCM, Mozilla, Apple) cannot be reached here, so PushManager is the one fake:
    # it hands push.js a subscription at the local push service. Everything else is the page's real flow.
    subscription = served.push.subscribe()
    page.add_init_script(script=FAKE_PUSH_MANAGER.replace("SUBSCRIPTION", json.dumps(subscription)))
    page.goto(served.url + "/notify")
    page.wait_for_selector("[data-push-on]:not([hidden])")  # push.js ran and registered /sw.js
    worker = service_worker(context, page)
    page.fill("[data-push-label]", "pixel 7")
    page.click("[data-push-on]")  # permission, VAPID key, subscribe, POST to the server, back to the page
    page.wait_for_url(served.url + "/notify?done=subscribed")
    assert "This device will get notifications." in page.content()
    assert page.locator(".notify-device strong").all_inner_texts() == ["pixel 7"], "the device list shows it"
    with served.svc.engine.connect() as conn:
        key = runtime(served.svc).keys().public_key
        assert conn.execute(select(func.count()).select_from(push_subscriptions)).scalar() == 1
    assert page.evaluate("localStorage.getItem('pn-fake-key')") == key, "subscribed with the server's VAPID key"
    page.wait_for_selector("[data-push-off]:not([hidden])")
    assert "Notifications are on for this device." in page.content()

    # An alert fires; the server encrypts and pushes; the push service decrypts; CDP hands it to the service worker.
    device = add_device(served.svc.engine, "core-sw1", ["core"])
    alert_id = fire(served.svc.engine, device, "core-sw1 is <b>down</b>")
    pushed = served.push.wait_for(1)[0]
    assert pushed.error == "" and pushed.payload["alert_id"] == alert_id
    cdp = context.new_cdp_session(page)
    registration = registration_id(cdp, page, served.url + "/")
    cdp.send("ServiceWorker.deliverPushMessage",
             {"origin": served.url, "registrationId": registration, "data": json.dumps(pushed.payload)})
    shown = wait_until(lambda: notifications(worker), what="the notification")
    assert shown[0]["title"] == "CRITICAL · core-sw1 is <b>down</b>" and shown[0]["actions"] == ["ack", "snooze"]
    assert shown[0]["tag"] == f"pocketnoc-{alert_id}-1" and shown[0]["data"]["url"] == f"/alerts/{alert_id}"

    # Tap "Acknowledge": the service worker posts the single-use token; the server acknowledges as pat.
    # The browser holds no session at that moment (signed out on the phone): the token alone does it.
    context.clear_cookies()
    worker.evaluate("""self.registration.getNotifications().then(ns => {
        self.dispatchEvent(new NotificationEvent("notificationclick", {notification: ns[0], action: "ack"}));
    })""")

    def acked_by() -> str | None:
        with served.svc.engine.connect() as conn:
            return conn.execute(select(alerts.c.acked_by).where(alerts.c.id == alert_id)).scalar()

    assert wait_until(acked_by, what="the acknowledgement") == "pat"
    confirmed = wait_until(lambda: [n for n in notifications(worker) if n["title"] == "Acknowledged"], what="the confirmation")
    assert confirmed[0]["actions"] == []

    # The same notification's token cannot be replayed.
    replay = page.evaluate(
        """async (token) => (await fetch("/api/v1/push/action", {method: "POST", credentials: "omit",
              headers: {"Content-Type": "application/json"}, body: JSON.stringify({token, action: "snooze"})})).status""",
        pushed.payload["token"])
    assert replay == 403

    # Tapping a notification (no action button) opens the alert in the app's window.
    _sign_in(page, served.url)  # now the page is controlled by the service worker, like an installed app's window
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    other = fire(served.svc.engine, add_device(served.svc.engine, "edge-1"), "edge-1 is down")
    second = served.push.wait_for(1, lambda p: p.payload["alert_id"] == other)[0]
    push = {"origin": served.url, "registrationId": registration, "data": json.dumps(second.payload)}
    wait_for_notification(page, worker, f"pocketnoc-{other}-1", lambda: cdp.send("ServiceWorker.deliverPushMessage", push))
    worker.evaluate(f"""self.registration.getNotifications({{tag: "pocketnoc-{other}-1"}}).then(ns => {{
        self.dispatchEvent(new NotificationEvent("notificationclick", {{notification: ns[0], action: ""}}));
    }})""")
    page.wait_for_url(f"{served.url}/alerts/{other}")
    assert "edge-1 is down" in page.content()
