"""The terminal in a real browser at a phone viewport against the real sshd: type a command and see its output, use the
key row, end, replay the recording from the audit; refused without the grant, without step-up, on a changed host key."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store import accounts, sessions
from server.store.devices import create_device
from tests.peers.sshd import SshdPeer, ensure_test_user
from tests.server.actions_helpers import ssh_device
from tests.server.app_browser import phone, playwright_browser, shot, sign_in
from tests.server.app_fleet import LiveServer, serve

Server = tuple[LiveServer, dict[str, int]]
Chromium = tuple[Playwright, Browser]

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sshd: SshdPeer) -> Iterator[tuple[LiveServer, dict[str, int]]]:
    ensure_test_user()
    settings = Settings(data_dir=tmp_path_factory.mktemp("term") / "data", writer_batch_seconds=0.05)
    with serve(settings) as live:
        live.user("admin", "admin")
        live.user("olga", "operator")
        other = Path(sshd.rsa_key_path + ".pub").read_text().split()[:2]
        ids = {}
        with live.svc.engine.begin() as conn:
            for name, extra in (("web-01", {}), ("impostor", {"ssh": {"host_key": " ".join(other)}})):
                spec = DeviceSpec.model_validate(ssh_device(sshd, name=name, **extra))
                ids[name] = create_device(conn, spec, live.svc.box, 3600)
        yield live, ids


@pytest.fixture(scope="module")
def browser() -> Iterator[tuple[Playwright, Browser]]:
    yield from playwright_browser()


def _rows(page: Page, where: str = "#term") -> str:
    return str(page.locator(f"{where} .xterm-rows").inner_text())


def _phone_as(server: Server, browser: Chromium, user: str, model: str = "Pixel 7") -> tuple[BrowserContext, Page, str]:
    """A phone signed in as `user`: its context, a page, and the server's URL."""
    p, b = browser
    context = phone(p, b, model)
    page = context.new_page()
    sign_in(page, server[0].url, user)
    return context, page, server[0].url


def _open(page: Page, url: str, device: int, reason: str) -> None:
    page.goto(f"{url}/devices/{device}")
    page.get_by_role("link", name="Open a terminal").click()
    page.fill("input[name=reason]", reason)
    page.get_by_role("button", name="Open the terminal").click()


def test_type_a_command_see_it_and_replay_it(server: Server, browser: Chromium) -> None:
    ids = server[1]
    context, page, url = _phone_as(server, browser, "admin")
    _open(page, url, ids["web-01"], "checking the disk from my phone")
    expect(page.locator("#term-state")).to_have_text("connected", timeout=30_000)
    page.locator("#term").click()
    page.keyboard.type("echo browser-$((3*4))")
    page.keyboard.press("Enter")
    expect(page.locator("#term .xterm-rows")).to_contain_text("browser-12", timeout=15_000)
    # The key row: a pipe from the row of keys the phone keyboard lacks, Ctrl+C from the Ctrl toggle.
    page.keyboard.type("echo aaa ")
    page.get_by_role("button", name="|", exact=True).click()
    page.keyboard.type(" tr a z")
    page.keyboard.press("Enter")
    expect(page.locator("#term .xterm-rows")).to_contain_text("zzz", timeout=15_000)
    page.keyboard.type("sleep 30")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Ctrl").click()
    page.keyboard.type("c")
    expect(page.locator("#term .xterm-rows")).to_contain_text("^C", timeout=10_000)
    page.keyboard.type("echo after-ctrl-c")
    page.keyboard.press("Enter")
    expect(page.locator("#term .xterm-rows")).to_contain_text("after-ctrl-c", timeout=10_000)
    page.get_by_role("button", name="Larger text").click()
    shot(page, "terminal")
    page.get_by_role("button", name="End the session").click()
    expect(page.locator("#term-state")).to_have_text("ended: user", timeout=15_000)
    session = page.locator("#term-page").get_attribute("data-session")
    # Replay from the audit: the admin's list of sessions, then the player.
    page.goto(f"{url}/admin/audit")
    page.get_by_role("link", name=f"replay #{session}").first.click()
    expect(page.locator("#replay")).to_have_attribute("data-ready", "1", timeout=15_000)
    page.get_by_role("button", name="Skip to end").click()
    expect(page.locator("#replay-term .xterm-rows")).to_contain_text("after-ctrl-c", timeout=10_000)
    assert "checking the disk from my phone" in page.locator("dl.facts").inner_text()
    shot(page, "terminal-replay")
    context.close()


def test_refused_without_the_grant(server: Server, browser: Chromium) -> None:
    ids = server[1]
    context, page, url = _phone_as(server, browser, "olga", "iPhone 13")
    page.goto(f"{url}/devices/{ids['web-01']}")
    expect(page.locator("#h-terminal + p")).to_contain_text("terminal permission")
    page.goto(f"{url}/devices/{ids['web-01']}/terminal")
    expect(page.locator(".err")).to_contain_text("terminal permission")
    expect(page.get_by_role("button", name="Open the terminal")).to_be_visible()
    page.fill("input[name=reason]", "trying anyway")
    page.get_by_role("button", name="Open the terminal").click()
    expect(page.locator(".err")).to_contain_text("terminal permission")
    assert page.locator("#term").count() == 0
    context.close()


def test_a_stale_second_factor_goes_to_step_up(server: Server, browser: Chromium) -> None:
    live, ids = server
    p, b = browser
    with live.svc.engine.begin() as conn:
        found = accounts.get_user_by_name(conn, "admin")
        assert found is not None
        cookie, _csrf = sessions.create(conn, found[0].id, "127.0.0.1", "phone", sessions.FULL, time.time() - 3600)
    context = phone(p, b, "Pixel 7")
    context.add_cookies([{"name": "pn_session", "value": cookie, "url": live.url}])
    page = context.new_page()
    page.goto(f"{live.url}/devices/{ids['web-01']}/terminal")
    assert "/account/verify" in page.url
    expect(page.locator("input[name=reason]")).to_have_count(0)
    context.close()


def test_a_changed_host_key_is_refused(server: Server, browser: Chromium) -> None:
    context, page, url = _phone_as(server, browser, "admin")
    _open(page, url, server[1]["impostor"], "is this the right server?")
    expect(page.locator("#term-state")).to_contain_text("host key mismatch", timeout=30_000)
    expect(page.locator("#term .xterm-rows")).to_contain_text("host key mismatch")
    context.close()
