"""Headless Chromium with the real service worker: a push from the server arrives (via CDP) and Acknowledge works."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import BrowserContext, Page

from server.notify.runtime import runtime
from tests import sql
from tests.server.notify_helpers import add_device, fire, wait_until
from tests.server.push_browser import (
    FAKE_PUSH_MANAGER,
    Served,
    notifications,
    registration_id,
    service_worker,
    sign_in_page,
    wait_for_notification,
)

pytestmark = pytest.mark.browser


def test_acknowledge_from_a_pushed_notification(push_served: Served, push_browser: tuple[BrowserContext, Page]) -> None:
    context, page = push_browser
    context.grant_permissions(["notifications"], origin=push_served.url)
    sign_in_page(page, push_served.url)
    # The browser's own push service (FCM, Mozilla, Apple) cannot be reached here, so PushManager is the one fake:
    # it hands push.js a subscription at the local push service. Everything else is the page's real flow.
    subscription = push_served.push.subscribe()
    page.add_init_script(script=FAKE_PUSH_MANAGER.replace("SUBSCRIPTION", json.dumps(subscription)))
    page.goto(push_served.url + "/notify")
    page.wait_for_selector("[data-push-on]:not([hidden])")  # push.js ran and registered /sw.js
    worker = service_worker(context, page)
    page.fill("[data-push-label]", "pixel 7")
    page.click("[data-push-on]")  # permission, VAPID key, subscribe, POST to the server, back to the page
    page.wait_for_url(push_served.url + "/notify?done=subscribed")
    assert "This device will get notifications." in page.content()
    assert page.locator(".notify-device strong").all_inner_texts() == ["pixel 7"], "the device list shows it"
    with push_served.svc.engine.connect() as conn:
        key = runtime(push_served.svc).keys().public_key
        assert sql.scalar(conn, "SELECT count(*) FROM push_subscriptions") == 1
    assert page.evaluate("localStorage.getItem('pn-fake-key')") == key, "subscribed with the server's VAPID key"
    page.wait_for_selector("[data-push-off]:not([hidden])")
    assert "Notifications are on for this device." in page.content()

    # An alert fires; the server encrypts and pushes; the push service decrypts; CDP hands it to the service worker.
    device = add_device(push_served.svc.engine, "core-sw1", ["core"])
    alert_id = fire(push_served.svc.engine, device, "core-sw1 is <b>down</b>")
    pushed = push_served.push.wait_for(1)[0]
    assert pushed.error == "" and pushed.payload["alert_id"] == alert_id
    cdp = context.new_cdp_session(page)
    registration = registration_id(cdp, page, push_served.url + "/")
    cdp.send("ServiceWorker.deliverPushMessage",
             {"origin": push_served.url, "registrationId": registration, "data": json.dumps(pushed.payload)})
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
        with push_served.svc.engine.connect() as conn:
            return sql.scalar(conn, "SELECT acked_by FROM alerts WHERE id = :id", id=alert_id)

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
    sign_in_page(page, push_served.url)  # now the page is controlled by the service worker, like an installed app's window
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    other = fire(push_served.svc.engine, add_device(push_served.svc.engine, "edge-1"), "edge-1 is down")
    second = push_served.push.wait_for(1, lambda p: p.payload["alert_id"] == other)[0]
    push = {"origin": push_served.url, "registrationId": registration, "data": json.dumps(second.payload)}
    wait_for_notification(page, worker, f"pocketnoc-{other}-1", lambda: cdp.send("ServiceWorker.deliverPushMessage", push))
    worker.evaluate(f"""self.registration.getNotifications({{tag: "pocketnoc-{other}-1"}}).then(ns => {{
        self.dispatchEvent(new NotificationEvent("notificationclick", {{notification: ns[0], action: ""}}));
    }})""")
    page.wait_for_url(f"{push_served.url}/alerts/{other}")
    assert "edge-1 is down" in page.content()
