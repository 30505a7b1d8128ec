"""Turning push on always ends: each failure (permission, service worker, push service, server) is said in words
within a time limit, with a Try again button; the retry then works. Headless Chromium with the real page and server."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import BrowserContext, Page

from tests import sql
from tests.server.push_browser import FAKE_PUSH_MANAGER, Served, sign_in_page

pytestmark = pytest.mark.browser
HANGING_PUSH_SERVICE = "PushManager.prototype.subscribe = () => new Promise(() => {});"  # asked, never answers
NO_SERVICE_WORKER = (
    "ServiceWorkerContainer.prototype.register = () => "
    "Promise.reject(new DOMException('Failed to register a ServiceWorker: storage is blocked', 'SecurityError'));"
)


def _open(page: Page, push_served: Served, *scripts: str) -> None:
    sign_in_page(page, push_served.url)
    for script in scripts:
        page.add_init_script(script=script)
    page.goto(push_served.url + "/notify")


def _failure(page: Page) -> str:
    """The reason shown (role=alert) once turning on failed, with Try again in place of the button."""
    page.wait_for_selector("[data-push-error]:not([hidden])")
    assert page.is_visible("[data-push-retry]") and not page.is_visible("[data-push-on]")
    assert page.get_attribute("[data-push-error]", "role") == "alert"
    return page.inner_text("[data-push-error]")


def _subscriptions(push_served: Served) -> int:
    with push_served.svc.engine.connect() as conn:
        return int(sql.one(conn, "SELECT count(*) FROM push_subscriptions")[0])


def test_permission_denied_says_so_and_try_again_works_once_allowed(
    push_served: Served, push_browser: tuple[BrowserContext, Page]
) -> None:
    context, page = push_browser
    subscription = push_served.push.subscribe()
    _open(page, push_served, FAKE_PUSH_MANAGER.replace("SUBSCRIPTION", json.dumps(subscription)))
    page.wait_for_selector("[data-push-on]:not([hidden])")
    page.evaluate("window.pnAsk = Notification.requestPermission; "
                  "Notification.requestPermission = () => Promise.resolve('denied')")  # what a blocked site answers
    page.click("[data-push-on]")
    reason = _failure(page)
    assert "permission denied" in reason and "site settings" in reason, reason
    page.evaluate("Notification.requestPermission = window.pnAsk")  # the admin allowed notifications for the site
    context.grant_permissions(["notifications"], origin=push_served.url)
    page.click("[data-push-retry]")
    page.wait_for_url(push_served.url + "/notify?done=subscribed", timeout=15_000)
    assert _subscriptions(push_served) == 1


def test_a_push_service_that_does_not_answer_ends_in_its_time_limit(
    push_served: Served, push_browser: tuple[BrowserContext, Page]
) -> None:
    context, page = push_browser
    context.grant_permissions(["notifications"], origin=push_served.url)
    sign_in_page(page, push_served.url)
    page.clock.install()  # the page's timers: the 15 s limit passes without the test waiting for it
    page.add_init_script(script=HANGING_PUSH_SERVICE)
    page.goto(push_served.url + "/notify")
    page.wait_for_selector("[data-push-on]:not([hidden])")
    page.click("[data-push-on]")
    page.wait_for_selector("[data-push-state]:has-text('push service')")
    page.clock.run_for(16_000)
    reason = _failure(page)
    assert "push service did not answer within 15 s" in reason, reason
    assert _subscriptions(push_served) == 0


def test_the_real_browser_push_service_being_unreachable_is_said(
    push_served: Served, push_browser: tuple[BrowserContext, Page]
) -> None:
    """No fake at all: headless Chromium's own push service cannot be reached here; it fails or times out, in words."""
    context, page = push_browser
    context.grant_permissions(["notifications"], origin=push_served.url)
    sign_in_page(page, push_served.url)
    page.clock.install()
    page.goto(push_served.url + "/notify")
    page.wait_for_selector("[data-push-on]:not([hidden])")
    page.click("[data-push-on]")
    # The step is announced, unless Chromium's push service refuses at once (then the error is already there).
    page.wait_for_selector("[data-push-state]:has-text('push service'), [data-push-error]:visible")
    started = time.monotonic()
    while not page.is_visible("[data-push-error]") and time.monotonic() - started < 20:
        page.clock.run_for(1_000)
        page.wait_for_timeout(50)
    reason = _failure(page)
    assert "push service" in reason, reason


def test_no_service_worker_is_said(push_served: Served, push_browser: tuple[BrowserContext, Page]) -> None:
    _context, page = push_browser
    _open(page, push_served, NO_SERVICE_WORKER)
    reason = _failure(page)  # the page's own check already fails, with the retry offered
    assert "no service worker" in reason and "storage is blocked" in reason, reason


def test_a_subscription_the_server_refuses_is_said(push_served: Served, push_browser: tuple[BrowserContext, Page]) -> None:
    context, page = push_browser
    context.grant_permissions(["notifications"], origin=push_served.url)
    subscription = {**push_served.push.subscribe(), "endpoint": "http://192.0.2.1/push/not-loopback"}  # plain http elsewhere
    _open(page, push_served, FAKE_PUSH_MANAGER.replace("SUBSCRIPTION", json.dumps(subscription)))
    page.wait_for_selector("[data-push-on]:not([hidden])")
    page.click("[data-push-on]")
    reason = _failure(page)
    assert reason.startswith("Could not turn notifications on: the server refused:"), reason
    assert _subscriptions(push_served) == 0
