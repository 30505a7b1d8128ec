"""Passkeys end to end in Chromium with a virtual authenticator: register, one-tap sign-in, second step, step-up."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page

from server.auth import access as auth
from server.auth import passwords
from server.config.settings import Settings
from server.runtime import Services
from tests import sql
from tests.server.app_browser import phone, playwright_browser
from tests.server.app_fleet import CHROMIUM, serve
from tests.server.conftest import PASSWORD

pytestmark = pytest.mark.browser
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
}


@dataclass
class Served:
    """The app served by uvicorn on 127.0.0.1, reached as http://localhost:PORT (a secure context for WebAuthn)."""

    url: str
    svc: Services


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A real HTTP server in a thread, with an admin `pat`."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing (make test installs it)")
    with serve(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)) as live:
        with live.svc.engine.begin() as conn:
            passwords.create_user(conn, "pat", "admin", PASSWORD)
        yield Served(live.url, live.svc)


@pytest.fixture
def browser_page() -> Iterator[tuple[BrowserContext, Page]]:
    """A Chromium page with a virtual platform authenticator that verifies the user."""
    for p, browser in playwright_browser():
        context = phone(p, browser, "Pixel 7")
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
        yield context, page


def _password_sign_in(page: Page, url: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", "pat")
    page.fill("input[name=password]", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")


def _sign_out(page: Page) -> None:
    page.click("summary")
    page.click("form[action='/logout'] button")
    page.wait_for_url("**/login")


def _last_login_method(svc: Services) -> str:
    found = sql.rows(svc.reader, "SELECT detail FROM audit WHERE action = 'login' ORDER BY id DESC LIMIT 1")
    assert found
    return str(sql.json_of(found[0].detail).get("method"))


def test_passkey_registration_sign_in_second_step_and_step_up(served: Served, browser_page: tuple[BrowserContext, Page]) -> None:
    context, page = browser_page
    _password_sign_in(page, served.url)
    page.wait_for_url(served.url + "/")
    # Register: the button appears only with JavaScript and WebAuthn; the first passkey brings recovery codes.
    page.goto(served.url + "/account/passkeys")
    page.fill("[data-passkey-name]", "pixel")
    page.click("[data-passkey=create]")
    page.wait_for_selector("text=shown only this once")
    assert page.locator("[data-passkey-status] code").count() == 10
    assert sql.scalars(served.svc.reader, "SELECT name FROM passkeys") == ["pixel"]

    # One tap: "Sign in with a passkey" on the login page, no user name or password.
    _sign_out(page)
    page.click("text=Sign in with a passkey")
    page.wait_for_url(served.url + "/")
    assert _last_login_method(served.svc) == "passkey"
    assert "pat" in page.content()

    # The password alone is now not enough: the second step offers the passkey.
    _sign_out(page)
    _password_sign_in(page, served.url)
    page.wait_for_url("**/login/2fa**")
    page.click("text=Use a passkey")
    page.wait_for_url(served.url + "/")
    assert _last_login_method(served.svc) == "passkey"

    # Step-up: a stale proof sends user management to "Confirm it's you"; the passkey confirms it.
    sql.run(served.svc.engine, "UPDATE sessions SET verified_at = verified_at - 3600")
    page.goto(served.url + "/admin/users")
    page.wait_for_url("**/account/verify**")
    page.click("text=Confirm with a passkey")
    page.wait_for_url(served.url + "/admin/users")
    assert page.locator("h1").inner_text() == "Users"
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies[auth.SESSION_COOKIE]["httpOnly"] and cookies[auth.SESSION_COOKIE]["sameSite"] == "Lax"


def test_the_password_form_works_without_javascript(served: Served) -> None:
    for _p, browser in playwright_browser():
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        page.goto(served.url + "/login")
        assert not page.locator("[data-passkey]").is_visible()  # hidden without JavaScript
        _password_sign_in(page, served.url)
        page.wait_for_url(served.url + "/")
