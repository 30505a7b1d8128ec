"""Discovery on a phone (Chromium, 360 px wide): start a run, approve a proposal, the device appears; the map
is readable at 360 px in light and dark, and tapping a node opens the device."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store import devices
from tests.peers.lab_network import LabNetwork, lab_network
from tests.server.app_browser import phone, playwright_browser, shot
from tests.server.app_browser import sign_in as browser_sign_in
from tests.server.app_fleet import serve

pytestmark = pytest.mark.browser
SMALL = {"viewport": {"width": 360, "height": 740}}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    with lab_network(tmp_path_factory.mktemp("lab")) as net:
        yield net


def no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways"


def test_run_approve_and_the_map_on_a_phone(tmp_path: Path, lab: LabNetwork) -> None:
    with serve(Settings(data_dir=tmp_path / "data")) as live:
        live.user("ada", "admin")
        with live.svc.engine.begin() as conn:  # already monitored: its proposal says so, with a link, and no tick box
            devices.create_device(conn, DeviceSpec(name="ap-known", address="127.0.77.3"), live.svc.box, 60)
        for p, browser in playwright_browser():
            page = phone(p, browser, "Pixel 7", **SMALL).new_page()
            browser_sign_in(page, live.url, "ada")
            page.goto(live.url + "/discovery")
            page.fill("textarea[name=ranges]", "127.0.77.0/29")
            page.fill("input[name=seed]", "127.0.77.1")
            page.fill("input[name=communities]", "public")
            page.fill("input[name=port]", str(lab.port))
            no_sideways_scroll(page)
            page.click("form[action='/discovery'] button[type=submit]")
            page.wait_for_url(f"{live.url}/discovery/runs/*")
            for _ in range(100):  # no JavaScript needed: the page says "still running" until the run ends
                if page.locator("#run-refresh").count() == 0:
                    break
                page.wait_for_timeout(200)
                page.click("#run-refresh a")
            expect(page.locator("#h-found")).to_contain_text("Answered SNMP")
            marker = page.eval_on_selector("details.card > summary.strong", "e => getComputedStyle(e, '::before').content")
            assert marker not in ("none", "normal", '""'), "a folded section must look tappable"  # flex hid the triangle
            known = page.locator(".proposal .badge:has(a)")
            expect(known).to_contain_text("known")
            box = known.bounding_box()  # a badge, not a 56 px tall list link squeezed into a circle
            assert box is not None and box["height"] < 30, box
            page.get_by_label("Add core-sw1").check()
            page.get_by_label("Add dist-sw1.lab.test").check()
            no_sideways_scroll(page)
            shot(page, "discovery-run", full_page=True)
            page.click("text=Add the ticked devices")
            expect(page.locator("p.ok")).to_contain_text("2 devices added")
            page.click("p.ok a[href='/map']")
            page.wait_for_url(live.url + "/map")
            svg = page.locator("svg.topo")
            box = svg.bounding_box()
            assert box is not None and box["width"] <= 360
            no_sideways_scroll(page)
            shot(page, "map-light")
            page.locator("svg.topo a[aria-label^='dist-sw1.lab.test']").click()
            page.wait_for_url(f"{live.url}/devices/*")
            expect(page.locator("#h-neigh")).to_contain_text("Neighbours")
            expect(page.locator("#neighbours")).to_contain_text("core-sw1")
            dark = phone(p, browser, "Pixel 7", color_scheme="dark", **SMALL).new_page()
            browser_sign_in(dark, live.url, "ada")
            dark.goto(live.url + "/map")
            stroke = dark.eval_on_selector("svg.topo a rect", "e => getComputedStyle(e).stroke")
            background = dark.eval_on_selector("svg.topo a rect", "e => getComputedStyle(e).fill")
            assert stroke != background
            shot(dark, "map-dark")
