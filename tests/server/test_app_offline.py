"""Offline: the service worker shows the last known state with its age, and acknowledgements made offline are sent later."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from server.config.settings import Settings
from tests import sql
from tests.server.app_browser import controlled, live, phone, playwright_browser, shot, sign_in, wait_for
from tests.server.app_fleet import build_fleet, serve

pytestmark = pytest.mark.browser
KEPT = "url => caches.open('pn-pages-v1').then(c => c.match(url)).then(hit => Boolean(hit))"


def test_offline_shows_the_last_state_with_its_age_and_replays_a_queued_ack(tmp_path: Path) -> None:
    with serve(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)) as server:
        fleet = build_fleet(server.svc.engine, server.svc.box, devices=200, alerts=12)
        server.user("op", "operator")
        for p, browser in playwright_browser():
            context = phone(p, browser, "Pixel 7")
            page = context.new_page()
            sign_in(page, server.url, "op")
            controlled(page)
            live(page)
            # The first page was loaded before the service worker ran: app.js has it kept, with its CSS and JS.
            wait_for(lambda: page.evaluate(KEPT, server.url + "/"), 30, "the first page kept for offline use")  # noqa: B023
            context.set_offline(True)
            page.reload()
            assert page.evaluate("document.body.dataset.cached") == "1", "the first page, served by the service worker"
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(243, 244, 246)", "styled offline"
            expect(page.locator("#stale")).to_contain_text("Offline — showing the last known state")
            context.set_offline(False)
            live(page)
            expect(page.locator("#stale")).to_be_hidden()
            page.goto(f"{server.url}/devices/{fleet.graphed}")
            page.goto(server.url + "/")
            first = page.locator(".arow").first
            alert_id = int((first.get_attribute("id") or "").removeprefix("alert-"))
            title = first.locator(".atitle").inner_text()

            context.set_offline(True)
            page.reload()
            assert page.evaluate("document.body.dataset.cached") == "1", "served by the service worker"
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(243, 244, 246)", "styled offline"
            expect(page.locator("#stale")).to_be_visible()
            banner = page.locator("#stale").inner_text()
            assert re.match(r"Offline — showing the last known state, from .+ \((just now|\d+ min ago)\)\.", banner), banner
            live(page, "offline")
            assert page.locator("[data-region=devices] li.row").count() == 30
            shot(page, "pixel-7-offline")
            page.goto(f"{server.url}/devices/{fleet.graphed}")
            assert page.locator("svg.spark").count() == 3, "a device page seen before is there offline too"
            page.goto(f"{server.url}/devices/{fleet.down[-1]}")
            expect(page.locator("h1")).to_have_text("You are offline")
            page.goto(server.url + "/")

            page.locator(f"#alert-{alert_id} form[action$='/ack'] button").tap()
            expect(page.locator("#queue")).to_contain_text(f"1 action made offline waiting to be sent: ack “{title}”")
            expect(page.locator(f"#alert-{alert_id}")).to_have_class(re.compile("queued"))
            shot(page, "pixel-7-offline-queued", docs=True)
            with server.svc.reader.connect() as conn:
                assert sql.scalar(conn, "SELECT acked_by FROM alerts WHERE id = :id", id=alert_id) is None

            context.set_offline(False)
            expect(page.locator("#queue")).to_contain_text(f"Sent 1 action made offline (ack “{title}”)", timeout=60_000)
            live(page)
            expect(page.locator("#stale")).to_be_hidden()
            shot(page, "pixel-7-back-online")
            with server.svc.reader.connect() as conn:
                acked_by = sql.scalar(conn, "SELECT acked_by FROM alerts WHERE id = :id", id=alert_id)
                note = sql.scalar(
                    conn, "SELECT text FROM alert_events WHERE alert_id = :id AND kind = :kind", id=alert_id, kind="acknowledged"
                )
            assert acked_by == "op"
            assert note and "offline on the phone" in note
            assert page.evaluate("localStorage.getItem('pn-queue')") == "[]"
            expect(page.locator(f"#alert-{alert_id} form[action$='/ack']")).to_have_count(0)
            context.close()
