"""The offline banner goes away when the connection comes back, also on a page without live regions (the terminal,
directory, account and admin pages): before, it said "Offline — showing the last known state" under a "live" pill."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from server.config.settings import Settings
from tests.server.app_browser import live, phone, playwright_browser, sign_in
from tests.server.app_fleet import LiveServer, serve

pytestmark = pytest.mark.browser


@pytest.fixture
def served(tmp_path: Path) -> Iterator[LiveServer]:
    with serve(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)) as server:
        server.user("olga", "operator")
        yield server


def test_the_offline_banner_leaves_when_the_connection_returns(served: LiveServer) -> None:
    for p, browser in playwright_browser():
        context = phone(p, browser, "iPhone 13")
        page = context.new_page()
        sign_in(page, served.url, "olga")
        page.goto(served.url + "/account")
        live(page)
        context.set_offline(True)
        expect(page.locator("#stale")).to_be_visible()
        context.set_offline(False)
        live(page)
        expect(page.locator("#stale")).to_be_hidden(timeout=5_000)
        context.close()
