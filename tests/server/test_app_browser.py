"""The phone app in headless chromium at iPhone 13 and Pixel 7 sizes, against 1,000 devices and 50 open alerts."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from server.config.settings import Settings
from tests import sql
from tests.server import app_lighthouse
from tests.server.app_browser import DOCS, answer_times_out, live, phone, playwright_browser, shot, sign_in, wait_for
from tests.server.app_fleet import PHONES, Fleet, LiveServer, build_fleet, serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Fleet]]:
    """One server with the big fleet for the whole module, and an operator, a viewer and an admin."""
    data = tmp_path_factory.mktemp("app") / "data"
    with serve(Settings(data_dir=data, writer_batch_seconds=0.05)) as server:
        fleet = build_fleet(server.svc.engine, server.svc.box)
        for role in ("operator", "viewer", "admin"):
            server.user(role[:2] + "-user", role)
        yield server, fleet


@pytest.fixture(scope="module")
def chromium() -> Iterator[tuple[Playwright, Browser]]:
    """One browser for the module; each test opens its own context."""
    yield from playwright_browser()


def _alert(server: LiveServer, alert_id: int) -> dict[str, object]:
    with server.svc.reader.connect() as conn:
        found = sql.records(conn, "alerts", "id = :id", id=alert_id)
    assert found
    return dict(found[0]._asdict())


def _no_sideways_scroll(page: Page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "the page scrolls sideways"


@pytest.mark.parametrize("device", PHONES)
def test_sign_in_then_the_overview_shows_what_is_broken_first(
    site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser], device: str
) -> None:
    server, _fleet = site
    p, browser = chromium
    slug = device.lower().replace(" ", "-")
    context = phone(p, browser, device)
    page = context.new_page()
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/login")
    assert page.get_by_label("User name").is_visible() and page.get_by_label("Password").is_visible()
    shot(page, f"{slug}-login")
    sign_in(page, server.url, "op-user")
    live(page)
    summary = dict(
        (label.strip(), int(number))
        for number, label in (t.split("\n", 1) for t in page.locator("[data-region=summary] .tile").all_inner_texts())
    )
    assert summary == {"down": 20, "unreachable": 10, "degraded": 10, "up": 960, "critical": 30, "warning": 10, "info": 10,
                       "all open": 50}  # fmt: skip
    height = page.viewport_size["height"] if page.viewport_size else 0
    first_ack = page.locator(".arow button").first.bounding_box()
    assert first_ack and first_ack["y"] + first_ack["height"] <= height, "the first alert and its Ack are on the first screen"
    assert page.locator("[data-region=devices] li.row").count() == 30
    assert page.locator("[data-region=devices] li.row").first.get_attribute("class") == "row s-down"
    _no_sideways_scroll(page)
    small = page.evaluate(
        "Math.min(...[...document.querySelectorAll('.sub,.ago,.badge,.axis,.tile span')]"
        ".map(e => parseFloat(getComputedStyle(e).fontSize)))"
    )
    assert small >= 12, "no text a phone user has to zoom to read"
    short = page.evaluate(
        "[...document.querySelectorAll('main button, .quick button, .chip, .row a, summary')]"
        ".filter(e => e.getBoundingClientRect().height < 38).map(e => e.outerHTML.slice(0, 80))"
    )
    assert short == [], "touch targets are large"
    clipped = (
        "[...document.querySelectorAll('.tile > *, .arow .quick, .row .side')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).length"
    )
    assert page.evaluate(clipped) == 0, "every count and label fits its tile"
    shot(page, f"{slug}-overview", docs=device == "iPhone 13")
    page.set_viewport_size({"width": 360, "height": 740})  # the narrowest common phone
    _no_sideways_scroll(page)
    assert page.evaluate(clipped) == 0
    page.fill("input[type=search]", "printer-0999")
    page.press("input[type=search]", "Enter")
    page.wait_for_url("**q=printer-0999**")
    assert page.locator("li.row .name").all_inner_texts() == ["printer-0999"]
    landscape = {"width": height, "height": page.viewport_size["width"] if page.viewport_size else 0}
    page.set_viewport_size(landscape)
    page.goto(server.url + "/")
    _no_sideways_scroll(page)
    shot(page, f"{slug}-overview-landscape")
    context.close()


def test_ack_and_snooze_from_the_list_in_one_tap(site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser]) -> None:
    server, fleet = site
    p, browser = chromium
    context = phone(p, browser, "Pixel 7")
    context.clock.install()  # time flows as usual; the wait for the answer to go is skipped (answer_times_out)
    page = context.new_page()
    sign_in(page, server.url, "op-user")
    live(page)
    row = page.locator(".arow").filter(has=page.locator("form[action$='/ack']")).first
    alert_id = int((row.get_attribute("id") or "").removeprefix("alert-"))
    page.evaluate("window.__stay = 1")
    row.locator("form[action$='/ack'] button").tap()
    wait_for(lambda: _alert(server, alert_id)["acked_by"] == "op-user", what="the acknowledgement")
    # Answered in place (the row stays put while the confirmation and its Undo are up), then the list is re-read
    # in place: the acknowledged alert moves below the firing ones (off the first 15).
    expect(page.locator("#flash")).to_be_visible()
    assert page.locator(f"#alert-{alert_id}").count() == 1, "the row stays while the answer is up"
    answer_times_out(page)
    expect(page.locator(f"#alert-{alert_id} form[action$='/ack']")).to_have_count(0, timeout=15_000)
    assert page.evaluate("window.__stay") == 1, "acknowledged without a page reload"
    assert page.locator(f"#alert-{alert_id}").count() <= 1, "no duplicated rows"
    other = page.locator(".arow").filter(has=page.locator("form[action$='/snooze']")).nth(1)
    other_id = int((other.get_attribute("id") or "").removeprefix("alert-"))
    other.locator("form[action$='/snooze'] button").tap()
    wait_for(lambda: _alert(server, other_id)["snoozed_until"], what="the snooze")
    shot(page, "pixel-7-after-ack")
    context.close()
    # Without JavaScript the same buttons are plain forms.
    context = phone(p, browser, "iPhone 13", java_script_enabled=False)
    page = context.new_page()
    sign_in(page, server.url, "op-user")
    third = page.locator(".arow").filter(has=page.locator("form[action$='/ack']")).first
    third_id = int((third.get_attribute("id") or "").removeprefix("alert-"))
    third.locator("form[action$='/ack'] button").click()
    page.wait_for_url(f"{server.url}/?done=ack&alert={third_id}#alert-{third_id}")
    assert _alert(server, third_id)["acked_by"] == "op-user"
    assert fleet.alerts
    context.close()


@pytest.mark.parametrize("device", PHONES)
def test_the_device_page_shows_graphs_you_can_touch_to_read(
    site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser], device: str
) -> None:
    server, fleet = site
    p, browser = chromium
    slug = device.lower().replace(" ", "-")
    context = phone(p, browser, device)
    page = context.new_page()
    sign_in(page, server.url, "vi-user")
    page.goto(f"{server.url}/devices/{fleet.graphed}")
    assert page.locator("h1").inner_text().strip() == "switch-0000"
    graphs = page.locator("figure.graph")
    assert graphs.count() == 3
    assert page.locator("nav.ranges a[aria-current=true]").inner_text() == "24h"
    spark = page.locator("svg.spark").first
    box = spark.bounding_box()
    assert box and box["width"] > 300, "graphs use the phone's width"
    spark.scroll_into_view_if_needed()
    box = spark.bounding_box()
    assert box
    page.touchscreen.tap(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
    readout = page.locator(".readout").first
    readout.wait_for(state="visible")
    assert "%" in readout.inner_text() and ":" in readout.inner_text(), "a time and a value"
    assert spark.evaluate("e => getComputedStyle(e).outlineStyle") == "none", "no focus ring drawn round a touched graph"
    shot(page, f"{slug}-device-graph-touch", docs=device == "iPhone 13")
    page.keyboard.press("ArrowLeft")
    _no_sideways_scroll(page)
    page.set_viewport_size({"width": 360, "height": 740})
    _no_sideways_scroll(page)
    narrow = page.locator("svg.spark").first.bounding_box()
    assert narrow and narrow["width"] >= 300, "graphs stay readable on a 360 px screen"
    page.goto(f"{server.url}/devices/{fleet.graphed}")
    shot(page, f"{slug}-device")
    page.click("nav.ranges >> text=7d")
    page.wait_for_url("**range=7d**")
    assert page.locator("svg.spark").count() == 3
    page.click("#interfaces details.more-rows > summary")  # ports without problems sit behind a count
    page.click("text=Gi1/0/1")
    page.wait_for_url("**/interfaces/1**")
    assert page.locator("figure.graph").count() >= 3
    shot(page, f"{slug}-interface")
    context.close()


def test_poll_now_says_what_it_did_once_on_a_phone(site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser]) -> None:
    """This server does not poll (as a serve process beside queue workers that is not leading may not): the tap says
    so on the phone's first screen, and a reload of the page does not say it again."""
    server, fleet = site
    p, browser = chromium
    context = phone(p, browser, "Pixel 7")
    page = context.new_page()
    sign_in(page, server.url, "op-user")
    page.goto(f"{server.url}/devices/{fleet.graphed}")
    page.click("button:text('Poll now')")
    said = page.locator("[data-poll-said]")
    said.wait_for(state="visible")
    assert said.inner_text().startswith("Not polled: this server process does not poll")
    box = said.bounding_box()
    assert box and box["y"] + box["height"] < (page.viewport_size or {"height": 0})["height"], "on the first screen"
    page.wait_for_function("!location.search.includes('done=')")  # the address no longer carries it
    assert page.url == f"{server.url}/devices/{fleet.graphed}"
    page.reload()
    assert page.locator("[data-poll-said]").count() == 0
    context.close()


def test_dark_mode_follows_the_system(site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser]) -> None:
    server, fleet = site
    p, browser = chromium
    axe = (app_lighthouse.lighthouse().parent.parent / "axe-core" / "axe.min.js").read_text()  # Lighthouse's own axe
    colours = {}
    for scheme in ("light", "dark"):
        context = phone(p, browser, "iPhone 13", color_scheme=scheme, bypass_csp=True)
        page = context.new_page()
        sign_in(page, server.url, "op-user")
        live(page)
        colours[scheme] = page.evaluate(
            "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
        )
        if scheme == "dark":
            shot(page, "iphone-13-overview-dark", docs=True)
        # Lighthouse checks the light pages; axe checks both (contrast, names, labels) here, the dark ones included.
        for path in ("/", f"/devices/{fleet.graphed}", f"/devices/{fleet.down[0]}", f"/alerts/{fleet.alerts[0]}", "/settings"):
            page.goto(server.url + path)
            page.evaluate(axe)
            found = page.evaluate(
                "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']})"
                ".then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.html.slice(0, 80)).join(' | ')))"
            )
            assert found == [], f"{scheme} {path}: {found}"
        # The alert page's severity badge has the list's severity colour; its state badge is coloured too.
        page.goto(f"{server.url}/alerts")
        listed = page.evaluate(f"getComputedStyle(document.querySelector('#alert-{fleet.alerts[0]} .sev')).backgroundColor")
        page.goto(f"{server.url}/alerts/{fleet.alerts[0]}")
        sev_bg, state_fg, text_fg = page.evaluate(
            "[getComputedStyle(document.querySelector('.sevb')).backgroundColor,"
            " getComputedStyle(document.querySelector('.stb')).color, getComputedStyle(document.body).color]"
        )
        assert sev_bg == listed and sev_bg != "rgba(0, 0, 0, 0)", (scheme, sev_bg, listed)
        assert state_fg != text_fg, f"{scheme}: the state badge is coloured"
        if scheme == "dark":
            page.goto(f"{server.url}/devices/{fleet.graphed}")
            shot(page, "iphone-13-device-dark")
        context.close()

    def brightness(css: str) -> int:
        return sum(int(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])

    assert brightness(colours["dark"][0]) < 100 < 600 < brightness(colours["dark"][1])
    assert brightness(colours["light"][0]) > 600 > 100 > brightness(colours["light"][1])


def test_settings_inventory_and_rules_are_reachable_from_the_menu(
    site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser]
) -> None:
    server, _fleet = site
    p, browser = chromium
    context = phone(p, browser, "Pixel 7")
    page = context.new_page()
    sign_in(page, server.url, "ad-user")
    page.click("summary[aria-label=Menu]")
    page.click("nav[aria-label=Main] >> text=Settings")
    page.wait_for_url("**/settings")
    titles = ("Account", "Password", "Authenticator app", "Passkeys", "Notifications", "Alert rules", "Channels",
              "Maintenance windows", "Inventory", "Users")  # fmt: skip
    for title in titles:
        assert page.locator("main a strong").filter(has_text=re.compile(f"^{title}$")).is_visible(), title
    shot(page, "pixel-7-settings")
    links = page.eval_on_selector_all("main a[href^='/']", "links => links.map(a => a.getAttribute('href'))")
    page.set_viewport_size({"width": 360, "height": 740})
    for link in links:  # every settings page fits a narrow phone and has no control too small to tap
        response = page.goto(server.url + link)
        assert response and response.status == 200, link
        _no_sideways_scroll(page)
        small = page.evaluate(
            "[...document.querySelectorAll('main button, main select, main input:not([type=hidden]):not([type=checkbox]),"
            " main summary, main .ranges a, main .pager a')].filter(e => { const r = e.getBoundingClientRect();"
            " return r.height > 0 && r.height < 38 }).map(e => e.outerHTML.slice(0, 80))"
        )
        assert small == [], f"{link}: {small}"
    page.set_viewport_size({"width": 412, "height": 915})
    page.goto(server.url + "/settings")
    page.locator("main a strong").filter(has_text="Inventory").click()
    page.wait_for_url("**/admin/devices")
    assert page.locator("li.row").count() == 50
    page.click("summary >> text=Add a device")
    assert page.get_by_label("Address (IP or DNS name)").is_visible()
    shot(page, "pixel-7-inventory")
    page.goto(server.url + "/admin/rules")
    assert page.locator("li.rule").count() >= 5
    context.close()


def test_a_desktop_screen_gets_two_columns(site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser]) -> None:
    server, _fleet = site
    _p, browser = chromium
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, server.url, "vi-user")
    alerts_box = page.locator("[data-region=alerts]").bounding_box()
    devices_box = page.locator("[data-region=devices]").bounding_box()
    assert alerts_box and devices_box and devices_box["x"] > alerts_box["x"] + 300, "alerts and devices side by side"
    _no_sideways_scroll(page)
    shot(page, "desktop-overview")
    context.close()


def test_artifacts_are_where_the_readme_says(site: tuple[LiveServer, Fleet], chromium: tuple[Playwright, Browser]) -> None:
    p, _browser = chromium
    readme = (Path(__file__).resolve().parent.parent.parent / "README.md").read_text()
    shown = set(re.findall(r"docs/screenshots/([a-z0-9-]+)\.png", readme))
    assert shown == {"iphone-13-overview", "iphone-13-device-graph-touch", "iphone-13-live-device-down",
                     "pixel-7-offline-queued", "iphone-13-overview-dark", "pixel-7-ack-undo-light",
                     "iphone-13-switch-48-light", "pixel-7-slow-4g-verified"}  # fmt: skip
    assert {f.stem for f in DOCS.glob("*.png")} == shown, "docs/screenshots holds the README's screenshots, nothing stale"
    for name in shown:
        png = (DOCS / f"{name}.png").read_bytes()
        looks = p.devices["iPhone 13" if name.startswith("iphone-13") else "Pixel 7"]
        ratio, view = looks["device_scale_factor"], looks["viewport"]
        size = struct.unpack(">II", png[16:24])
        assert size == (round(view["width"] * ratio), round(view["height"] * ratio)), f"{name}: taken on a phone screen"
