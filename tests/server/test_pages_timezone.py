"""Each user's time zone: the browser's on a first visit, overridable on the account page, used for every time on a
page; the API stays in UTC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from server.auth import passwords
from server.config.settings import Settings
from server.store import prefs
from tests import sql
from tests.server.app_browser import playwright_browser, sign_in
from tests.server.app_fleet import serve
from tests.server.conftest import PASSWORD, AppEnv, bearer, form_csrf
from tests.server.conftest import sign_in as form_sign_in
from tests.server.notify_helpers import add_device, fire

MOMENT = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC


def _fire_at(env: AppEnv) -> int:
    device = add_device(env.svc.engine, "core-sw1")
    alert_id = fire(env.svc.engine, device)
    sql.update(env.svc.engine, "alerts", "id = :id", {"started_at": MOMENT}, id=alert_id)
    return alert_id


def _local(tz: str) -> str:
    return datetime.fromtimestamp(MOMENT, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S %Z")


def test_pages_show_times_in_the_users_zone_and_the_api_in_utc(app_env: AppEnv) -> None:
    app_env.user("kim", "operator")
    token = app_env.token("kim")
    form_sign_in(app_env.client, "kim")
    alert_id = _fire_at(app_env)
    assert _local("UTC") in app_env.client.get(f"/alerts/{alert_id}").text  # no zone yet: UTC, and says so
    account = app_env.client.get("/account")
    assert "Times on pages are shown in UTC" in account.text
    saved = app_env.client.post("/account/timezone", data={"csrf_token": form_csrf(account.text), "tz": "Asia/Kathmandu"})
    assert saved.status_code == 303 and saved.headers["location"] == "/account?done=tz"
    page = app_env.client.get(f"/alerts/{alert_id}").text
    assert _local("Asia/Kathmandu") in page and "2026-05-29 02:11:40" in page  # UTC+05:45
    assert _local("UTC") not in page
    api = app_env.client.get(f"/api/v1/alerts/{alert_id}", headers=bearer(token)).json()
    assert api["started_at"] == MOMENT  # the API is unchanged: times in UTC (epoch seconds), whoever asks
    assert "Time zone saved" in app_env.client.get("/account?done=tz").text


def test_a_wrong_zone_is_refused_in_words_and_the_browser_never_overrides_a_choice(app_env: AppEnv) -> None:
    app_env.user("kim", "operator")
    form_sign_in(app_env.client, "kim")
    csrf = form_csrf(app_env.client.get("/account").text)
    bad = app_env.client.post("/account/timezone", data={"csrf_token": csrf, "tz": "Mars/Olympus"})
    assert bad.status_code == 422 and "Unknown time zone &#39;Mars/Olympus&#39;" in bad.text
    assert app_env.client.post("/account/timezone", data={"csrf_token": csrf, "tz": "Europe/Berlin"}).status_code == 303
    auto = app_env.client.post("/account/timezone", data={"csrf_token": csrf, "tz": "America/Chicago", "auto": "1"})
    assert auto.status_code == 204
    with app_env.svc.reader.connect() as conn:
        user_id = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'kim'").scalar_one()
        assert prefs.get_tz(conn, user_id) == prefs.TimeZonePref("Europe/Berlin", False)
    page = app_env.client.get("/").text
    assert 'data-tz="Europe/Berlin"' in page and "data-tz-unset" not in page  # no script asks again
    no_csrf = app_env.client.post("/account/timezone", data={"tz": "UTC"})
    assert no_csrf.status_code == 403


@pytest.fixture
def browser_env(tmp_path: Path) -> Iterator[tuple[str, object]]:
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)
    with serve(settings) as live:
        with live.svc.engine.begin() as conn:
            passwords.create_user(conn, "pat", "operator", PASSWORD)
        yield live.url, live.svc


def test_the_browser_sets_its_zone_on_the_first_visit(browser_env: tuple[str, object]) -> None:
    url, svc = browser_env
    device = add_device(svc.engine, "core-sw1")  # type: ignore[attr-defined]
    alert_id = fire(svc.engine, device)  # type: ignore[attr-defined]
    for p, browser in playwright_browser():
        context = browser.new_context(**{**p.devices["Pixel 7"], "timezone_id": "America/New_York"})
        page = context.new_page()
        sign_in(page, url, "pat")
        deadline = time.monotonic() + 30
        while True:  # the script posts the zone, then reloads once
            with svc.reader.connect() as conn:  # type: ignore[attr-defined]
                user_id = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'pat'").scalar_one()
                pref = prefs.get_tz(conn, user_id)
            if pref is not None or time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        assert pref == prefs.TimeZonePref("America/New_York", True)
        expect(page.locator("body")).to_have_attribute("data-tz", "America/New_York")  # the reload came (else a goto races it)
        page.goto(f"{url}/alerts/{alert_id}")
        text = page.inner_text("main")
        assert (" EDT" in text or " EST" in text) and " UTC" not in text.split("History")[0], text[:600]
        assert page.get_attribute("body", "data-tz") == "America/New_York"
        context.close()


def test_the_zone_is_found_in_any_case_kept_on_error_chosen_from_a_list_or_the_browsers_again(app_env: AppEnv) -> None:
    app_env.user("kim", "operator")
    form_sign_in(app_env.client, "kim")
    account = app_env.client.get("/account").text
    assert 'list="tz-names"' in account and '<option value="Europe/Paris">' in account  # a list to choose from
    csrf = form_csrf(account)
    saved = app_env.client.post("/account/timezone", data={"csrf_token": csrf, "tz": " europe/paris "})
    assert saved.status_code == 303
    with app_env.svc.reader.connect() as conn:
        user_id = conn.exec_driver_sql("SELECT id FROM users WHERE name = 'kim'").scalar_one()
        assert prefs.get_tz(conn, user_id) == prefs.TimeZonePref("Europe/Paris", False)
    bad = app_env.client.post("/account/timezone", data={"csrf_token": csrf, "tz": "Europe/Pariss"})
    assert bad.status_code == 422 and 'value="Europe/Pariss"' in bad.text  # what was typed stays, to correct it
    assert "Use this browser's time zone" in bad.text
    back = app_env.client.post("/account/timezone", data={"csrf_token": csrf, "browser": "1"})
    assert back.status_code == 303 and back.headers["location"] == "/account?done=tz-browser"
    with app_env.svc.reader.connect() as conn:
        assert prefs.get_tz(conn, user_id) is None
    assert "data-tz-unset" in app_env.client.get("/").text  # the page asks the browser for its zone again


def test_moments_inside_stored_text_are_shown_in_the_readers_zone() -> None:
    from server.web.pages.common import TEMPLATES

    shown = TEMPLATES.env.from_string("{{ t|local_times }}").render(
        zone=ZoneInfo("Asia/Kathmandu"), t="failed again at 2026-05-28T20:26:40Z; TLS until 2027-01-01T00:00:00+00:00 <b>"
    )
    assert shown == "failed again at 2026-05-29 02:11:40 +0545; TLS until 2027-01-01 05:45:00 +0545 &lt;b&gt;"
