"""On a phone (Chromium at an iPhone 13 viewport) against the real Samba DC: search as you type, open the person who
is locked out, unlock them, and read the directory's answer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from server.config.settings import Settings
from server.store import accounts, grants
from tests.peers.samba_dc import USERS, SambaDC
from tests.server.app_browser import phone, playwright_browser, shot, sign_in
from tests.server.app_fleet import LiveServer, serve
from tests.server.directory_helpers import ad_entry, write_directories

pytestmark = pytest.mark.browser


@pytest.fixture
def served(samba_dc: SambaDC, tmp_path: Path) -> Iterator[LiveServer]:
    path = write_directories(tmp_path / "directories.yaml", ad_entry(samba_dc, name="corp"))
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, directories_file=path)
    with serve(settings) as live:
        live.user("olga", "operator")
        live.user("vic", "viewer")
        with live.svc.engine.begin() as conn:
            found = accounts.get_user_by_name(conn, "olga")
            assert found is not None
            grants.add(conn, found[0].id, ["directory"], "test")
        yield live


@pytest.fixture(scope="module")
def chromium() -> Iterator[tuple[Playwright, Browser]]:
    """One browser for the module (each test has a context of its own)."""
    yield from playwright_browser()


@pytest.fixture
def page(chromium: tuple[Playwright, Browser]) -> Iterator[Page]:
    p, browser = chromium
    context = phone(p, browser, "iPhone 13")
    yield context.new_page()
    context.close()


def test_search_open_and_unlock_on_a_phone(served: LiveServer, samba_dc: SambaDC, page: Page) -> None:
    from server.services import directories

    ldap = directories.load(served.svc, "corp")[1]
    dn = f"CN=jroe,{USERS}"
    for _ in range(3):
        assert ldap.try_bind(dn, "not the password") is not None

    sign_in(page, served.url, "olga")
    page.locator("summary[aria-label=Menu]").click()
    page.get_by_role("link", name="Directory").click()
    page.wait_for_url(served.url + "/directory/corp")
    page.get_by_placeholder("Name, login or e-mail").press_sequentially("Janet", delay=40)
    result = page.locator("#dir-results").get_by_role("link", name="Janet Roe")
    expect(result).to_be_visible()  # swapped in as typed: no submit
    expect(result).to_contain_text("locked")
    assert page.url == served.url + "/directory/corp"
    shot(page, "directory-search")
    result.click()
    expect(page.locator("#state-locked")).to_contain_text("locked since")
    expect(page.locator("#state-bad")).to_have_text("badPwdCount 3")
    page.get_by_role("link", name="Unlock…").click()
    page.get_by_label("I confirm: unlock jroe").check()
    page.get_by_role("button", name="Unlock").click()
    expect(page.locator("#outcome")).to_contain_text("unlocked — badPwdCount 0")
    expect(page.locator("#state-locked")).to_have_text("not locked")
    shot(page, "directory-unlocked")
    assert ldap.try_bind(dn, "wrong again") is not None  # a wrong password is still wrong, but the account is open
    with served.svc.reader.connect() as conn:
        entry = next(e for e in accounts.read_audit(conn, 50) if e["action"] == "directory.unlock")
    assert entry["username"] == "olga" and entry["detail"]["outcome"] == "took"


def test_a_viewer_sees_no_directory(served: LiveServer, page: Page) -> None:
    sign_in(page, served.url, "vic")
    page.locator("summary[aria-label=Menu]").click()
    expect(page.get_by_role("link", name="Directory")).to_have_count(0)
    answer = page.goto(served.url + "/directory/corp")
    assert answer is not None and answer.status == 403
