"""Browser helpers for the phone-app tests: Debian's chromium through Playwright, phone contexts, screenshots."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.server.app_fleet import BROWSER_ARGS, CHROMIUM, PASSWORD

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "phone"
DOCS = ROOT / "docs" / "screenshots"
FLASH_MS = 8000  # web/static/app.js: how long the answer to an ack/snooze tap stays up (a list holds its rows meanwhile)


def playwright_browser() -> Iterator[tuple[Playwright, Browser]]:
    """Playwright and a headless chromium (fails loudly when chromium is missing: `make test` installs it)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing (make test installs it)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        try:
            yield p, browser
        finally:
            browser.close()


def phone(p: Playwright, browser: Browser, name: str, **options: Any) -> BrowserContext:
    """A context that looks like the named phone (viewport, pixel ratio, touch, user agent)."""
    context = browser.new_context(**{**p.devices[name], **options})
    context.set_default_timeout(30_000)
    return context


def sign_in(page: Page, url: str, user: str) -> None:
    """Sign in through the form and land on the overview."""
    page.goto(url + "/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url(url + "/")


def session_cookie(url: str, user: str) -> str:
    """A session cookie for `user`, signed in through the form by a plain HTTP client."""
    with httpx.Client(base_url=url, timeout=30) as client:
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token
        client.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": token.group(1), "next": "/"})
        cookie = client.cookies.get("pn_session")
    assert cookie
    return cookie


def controlled(page: Page, timeout: float = 30.0) -> None:
    """Wait until the service worker controls the page (it claims open pages when it activates)."""
    wait_for(lambda: page.evaluate("navigator.serviceWorker.controller !== null"), timeout, "the service worker")


def live(page: Page, state: str = "live", timeout: float = 30.0) -> None:
    """Wait until the live indicator says `state` (the CSP forbids eval, so poll instead of wait_for_function)."""
    expect(page.locator("#live .ltext")).to_have_text(state, timeout=timeout * 1000)


def answer_times_out(page: Page) -> None:
    """The answer to a tap stays up FLASH_MS: jump the page's clock past it instead of waiting (the context's clock is
    installed before its pages open: `context.clock.install()`); its timers fire now (the answer goes, the list is re-read)."""
    page.clock.fast_forward(FLASH_MS + 100)


def shot(page: Page, name: str, docs: bool = False, full_page: bool = False) -> Path:
    """Save a screenshot under test-artifacts/phone (and docs/screenshots for the README)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    if docs:
        DOCS.mkdir(parents=True, exist_ok=True)
        (DOCS / f"{name}.png").write_bytes(path.read_bytes())
    return path


def wait_for(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def axe(page: Page) -> list[str]:
    """axe-core's WCAG 2 A/AA and best-practice violations on the page as it is now (Lighthouse's own axe build;
    the context needs bypass_csp=True to inject it)."""
    from tests.server import app_lighthouse

    page.evaluate((app_lighthouse.lighthouse().parent.parent / "axe-core" / "axe.min.js").read_text())
    found: list[str] = page.evaluate(
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']})"
        ".then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.html.slice(0, 80)).join(' | ')))"
    )
    return found
