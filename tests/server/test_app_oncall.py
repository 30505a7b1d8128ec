"""The on-call path in headless chromium at phone sizes: an ack or snooze answers in place, announced, with Undo
(and without JavaScript too); a 48-port switch shows its problem ports on the first screen, with a filter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store.alerts import fire_event_alert
from server.store.devices import create_device
from server.store.metrics import labels_key
from tests import sql
from tests.server import app_lighthouse
from tests.server.app_browser import answer_times_out, live, phone, playwright_browser, shot, sign_in, wait_for
from tests.server.app_fleet import Fleet, LiveServer, build_fleet, serve

pytestmark = pytest.mark.browser
PROBLEM_PORTS = (17, 23)  # interface-down alerts (seen up, then down)
ERROR_PORT = 31


def _ports() -> list[dict[str, Any]]:
    rows = []
    for n in range(1, 49):
        unused = n % 5 == 0  # desks switched off: down, but never seen up, so not a problem
        rows.append({"index": n, "name": f"Gi1/0/{n}", "descr": f"GigabitEthernet1/0/{n}",
                     "alias": "uplink core-sw1" if n == 48 else (f"desk 2-{n:02d}" if not unused else ""),
                     "admin": "up", "oper": "down" if unused or n in PROBLEM_PORTS else "up",
                     "speed_bps": 1_000_000_000, "last_change_s": 100.0})  # fmt: skip
    return rows


def _switch(server: LiveServer) -> int:
    now = time.time()
    with server.svc.engine.begin() as conn:
        spec = DeviceSpec(name="access-sw48", address="10.9.9.48", kind="switch", snmp={"version": "2c", "community": "public"})  # type: ignore[arg-type]
        device_id = create_device(conn, spec, server.svc.box, 60)
        errors = labels_key({"ifIndex": str(ERROR_PORT), "ifName": f"Gi1/0/{ERROR_PORT}"})
        status = {"state": "up", "state_since": now - 3600, "last_polled": now - 5, "tables": {"interfaces": _ports()},
                  "facts": {"kind": "switch", "uptime_seconds": 86400.0, "sys_object_id": "1.3.6.1.4.1.9.1.2134"},
                  "metrics": {"snmp": [["if_in_errors_rate", errors, 2.5]]}}  # fmt: skip
        sql.update(conn, "device_status", "device_id = :d", status, d=device_id)
        for n in PROBLEM_PORTS:
            key = labels_key({"ifIndex": str(n), "ifName": f"Gi1/0/{n}"})
            fire_event_alert(conn, "interface-down", device_id, key, "warning", f"access-sw48: interface Gi1/0/{n} is down",
                             now - 60 * n, "fixture")  # fmt: skip
    return device_id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Fleet, int]]:
    data = tmp_path_factory.mktemp("oncall") / "data"
    with serve(Settings(data_dir=data, writer_batch_seconds=0.05)) as server:
        fleet = build_fleet(server.svc.engine, server.svc.box, devices=60, alerts=12)
        switch = _switch(server)
        server.user("op-user", "operator")
        yield server, fleet, switch


@pytest.fixture(scope="module")
def chromium() -> Iterator[tuple[Playwright, Browser]]:
    yield from playwright_browser()


def _alert(server: LiveServer, alert_id: int) -> dict[str, Any]:
    with server.svc.reader.connect() as conn:
        found = sql.records(conn, "alerts", "id = :id", id=alert_id)
    assert found
    return dict(found[0]._asdict())


def _axe(page: Page) -> list[str]:
    page.evaluate((app_lighthouse.lighthouse().parent.parent / "axe-core" / "axe.min.js").read_text())
    found: list[str] = page.evaluate(
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'best-practice']})"
        ".then(r => r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.html.slice(0, 80)).join(' | ')))"
    )
    return found


def _in_first_screen(page: Page, selector: str) -> bool:
    return bool(page.evaluate(f"document.querySelector({selector!r}).getBoundingClientRect().bottom <= innerHeight"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_ack_and_snooze_answer_in_place_with_undo(
    site: tuple[LiveServer, Fleet, int], chromium: tuple[Playwright, Browser], scheme: str
) -> None:
    server, _fleet, _switch_id = site
    p, browser = chromium
    context = phone(p, browser, "Pixel 7", color_scheme=scheme, bypass_csp=True)
    context.clock.install()  # time flows as usual; the wait for the answer to go is skipped (answer_times_out)
    page = context.new_page()
    sign_in(page, server.url, "op-user")
    live(page)
    row = page.locator(".arow").filter(has=page.locator("form[action$='/ack']")).nth(2)
    alert_id = int((row.get_attribute("id") or "").removeprefix("alert-"))
    title = str(_alert(server, alert_id)["title"])
    # The button's name reads as words (not "Ack nowledge").
    button = page.get_by_role("button", name=f"Acknowledge {title}", exact=True)
    expect(button).to_have_count(1)
    before = (row.bounding_box() or {}).get("y")
    page.evaluate("window.__stay = 1")
    button.tap()
    flash = page.locator("#flash")
    expect(flash).to_be_visible()
    expect(flash).to_contain_text(f"Acknowledged: {title}")
    assert flash.get_attribute("role") == "status" and flash.get_attribute("aria-live") == "polite"
    assert _in_first_screen(page, "#flash"), "the confirmation is where the thumb is"
    wait_for(lambda: _alert(server, alert_id)["acked_by"] == "op-user", what="the acknowledgement")
    assert (row.bounding_box() or {}).get("y") == before, "the row stays where it was while the answer is up"
    assert page.evaluate("window.__stay") == 1
    assert _axe(page) == [], scheme
    shot(page, f"pixel-7-ack-undo-{scheme}", docs=scheme == "light")
    flash.get_by_role("button", name="Undo").tap()
    wait_for(lambda: _alert(server, alert_id)["acked_by"] is None, what="the undo")
    # The Undo is answered in place too: visible, announced, and nothing more to undo.
    expect(flash).to_be_visible()
    expect(flash).to_contain_text(f"Undone: {title}")
    expect(flash.get_by_role("button", name="Undo")).to_have_count(0)
    assert _in_first_screen(page, "#flash")
    # Snooze, then wake it: both answered in place, each with Undo. The row's buttons come back when the answer goes.
    answer_times_out(page)
    snoozable = page.locator(f"#alert-{alert_id} form[action$='/snooze'] button")
    expect(snoozable).to_have_attribute("aria-label", f"Snooze {title} for 1 hour")
    snoozable.tap()
    expect(flash).to_contain_text(f"Snoozed: {title}")
    wait_for(lambda: _alert(server, alert_id)["snoozed_until"], what="the snooze")
    flash.get_by_role("button", name="Undo").tap()
    wait_for(lambda: _alert(server, alert_id)["snoozed_until"] is None, what="the snooze undone")
    expect(flash).to_contain_text(f"Undone: {title}")
    context.close()


def test_without_javascript_the_answer_and_undo_are_plain_pages(
    site: tuple[LiveServer, Fleet, int], chromium: tuple[Playwright, Browser]
) -> None:
    server, _fleet, _switch_id = site
    p, browser = chromium
    context = phone(p, browser, "iPhone 13", java_script_enabled=False)
    page = context.new_page()
    sign_in(page, server.url, "op-user")
    row = page.locator(".arow").filter(has=page.locator("form[action$='/ack']")).nth(4)
    alert_id = int((row.get_attribute("id") or "").removeprefix("alert-"))
    title = str(_alert(server, alert_id)["title"])
    row.locator("form[action$='/ack'] button").click()
    page.wait_for_url(f"{server.url}/?done=ack&alert={alert_id}#alert-{alert_id}")
    assert _alert(server, alert_id)["acked_by"] == "op-user"
    expect(page.locator("#flash")).to_contain_text(f"Acknowledged: {title}")
    assert page.locator("#flash").get_attribute("role") == "alert", "announced when the page loads"
    undo = page.locator("#flash form.undo")
    assert undo.evaluate("f => getComputedStyle(f).animationDelay") == "8s", "Undo for a few seconds, then gone"
    page.locator("#flash").get_by_role("button", name="Undo").click()
    page.wait_for_url(f"{server.url}/?done=undone&alert={alert_id}#alert-{alert_id}")
    assert _alert(server, alert_id)["acked_by"] is None
    expect(page.locator("#flash")).to_contain_text(f"Undone: {title}")
    expect(page.locator("#flash").get_by_role("button", name="Undo")).to_have_count(0)
    # Snooze from the alert page, then end it: "Snooze ended", and Undo brings the snooze back.
    page.goto(f"{server.url}/alerts/{alert_id}")
    page.get_by_role("button", name="1 h", exact=True).click()
    assert _alert(server, alert_id)["snoozed_until"]
    page.get_by_role("button", name="End snooze").click()
    expect(page.locator("#flash")).to_contain_text(f"Snooze ended: {title}")
    assert _alert(server, alert_id)["snoozed_until"] is None
    page.locator("#flash").get_by_role("button", name="Undo").click()
    until = _alert(server, alert_id)["snoozed_until"]
    assert until and 55 * 60 < until - time.time() <= 3600
    context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_48_port_switch_shows_its_problems_on_the_first_screen(
    site: tuple[LiveServer, Fleet, int], chromium: tuple[Playwright, Browser], scheme: str
) -> None:
    server, _fleet, switch = site
    p, browser = chromium
    context = phone(p, browser, "iPhone 13", color_scheme=scheme, bypass_csp=True)
    page = context.new_page()
    sign_in(page, server.url, "op-user")
    page.goto(f"{server.url}/devices/{switch}")
    problems = page.locator("#interfaces ul.problems > li")
    expect(problems).to_have_count(3)
    names = [problems.nth(i).locator("strong").inner_text() for i in range(3)]
    assert sorted(names) == sorted([f"Gi1/0/{n}" for n in (*PROBLEM_PORTS, ERROR_PORT)]), names
    assert _in_first_screen(page, "#interfaces ul.problems > li:last-child"), "the problem ports fit the first screen"
    expect(page.locator("#neighbours h2")).to_contain_text("Neighbours")  # the card is there, below the ports
    box, first = (page.locator(s).bounding_box() or {} for s in ("#row-filter", "#interfaces ul.problems"))
    assert box["y"] + box["height"] <= first["y"], "the filter comes before the ports, where the eye lands first"
    summary = page.locator("#interfaces details.more-rows > summary")
    expect(summary).to_have_text("45 more ports without problems")
    expect(page.locator("#interfaces details.more-rows")).not_to_have_attribute("open", "")
    assert _axe(page) == [], scheme
    shot(page, f"iphone-13-switch-48-{scheme}", docs=scheme == "light")
    # The filter narrows at once as you type (and works as ?q= without JavaScript).
    page.fill("#row-filter", "desk 2-4")
    visible = page.locator("#interfaces li[data-filter]:visible")
    expect(visible).to_have_count(len([n for n in range(40, 48) if n % 5]))
    page.goto(f"{server.url}/devices/{switch}?q=uplink")
    expect(page.locator("#interfaces li[data-filter]")).to_have_count(1)
    expect(page.locator("#interfaces [role=status]")).to_have_text("1 of 48 match “uplink”.")
    context.close()
