"""Action pages from the phone: the panel, the confirmation (exact command), the run page without and with JavaScript."""

from __future__ import annotations

import html
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.store import alerts as alerts_store
from server.store.devices import create_device
from server.store.metrics import labels_key
from tests import sql
from tests.peers.sshd import SshdPeer
from tests.server.actions_helpers import ActionEnv, make_env, scratch_dir, ssh_device
from tests.server.app_browser import phone, playwright_browser, shot
from tests.server.app_browser import sign_in as browser_sign_in
from tests.server.app_fleet import serve
from tests.server.conftest import form_csrf, sign_in

CATALOG = """
actions:
  - id: touch-file
    title: Create a file
    applies_to: {kinds: [linux]}
    params:
      - {name: name, type: string, pattern: "[a-z0-9._-]{1,32}", default: first.txt}
    ssh: "touch {base}/{name} && echo created {name}"
    verify: false
  - id: count-slowly
    title: Count slowly
    danger: low
    params:
      - {name: upto, type: integer, min: 1, max: 20, default: 6}
    ssh: "for i in $(seq 1 {upto}); do echo line $i; sleep 0.5; done"
    verify: false
  - id: wipe-box
    title: Wipe (simulated)
    danger: high
    ssh: "echo wiped > {base}/wiped"
    verify: false
  - id: say-word
    title: Say a word
    params:
      - {name: word, type: enum, choices: [hello, bye]}
    ssh: "echo {word}"
    verify: false
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    yield from make_env(tmp_path, CATALOG, poll=False)


@pytest.fixture
def device(env: ActionEnv, sshd: SshdPeer) -> int:
    return env.add_device(ssh_device(sshd))


def _signed_in(env: ActionEnv, name: str) -> TestClient:
    env.client.cookies.clear()
    sign_in(env.client, name)  # a session cookie; bearer headers of env.run still win for API calls
    return env.client


def test_the_device_page_offers_actions_and_runs_in_two_taps(env: ActionEnv, device: int) -> None:
    client = _signed_in(env, "operator")
    page = client.get(f"/devices/{device}")
    assert page.status_code == 200 and 'id="actions"' in page.text
    links = re.findall(r'href="(/devices/\d+/actions/[a-z-]+)"', page.text)
    assert f"/devices/{device}/actions/touch-file" in links and f"/devices/{device}/actions/wipe-box" in links
    # Tap 1: the confirmation shows exactly what will run, parameters filled in.
    confirm = client.get(f"/devices/{device}/actions/touch-file")
    assert confirm.status_code == 200
    assert f"touch {env.scratch}/first.txt &amp;&amp; echo created first.txt" in confirm.text
    # Tap 2: run; the browser lands on the run page.
    form = {"csrf_token": form_csrf(confirm.text), "expected": re.search(r'name="expected" value="(\w+)"', confirm.text)[1]}  # type: ignore[index]
    form["param_name"] = "first.txt"
    r = client.post(f"/devices/{device}/actions/touch-file/run", data=form)
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    env.wait(run_id)
    assert (env.scratch / "first.txt").exists()
    shown = client.get(f"/runs/{run_id}")
    assert "created first.txt" in shown.text and "succeeded" in shown.text and "Refresh" not in shown.text
    assert '<script src="/static/actions.js" defer></script>' in shown.text and "<script>" not in shown.text
    history = client.get(f"/devices/{device}/runs")
    assert f"/runs/{run_id}" in history.text


def test_the_alert_page_offers_actions_and_keeps_the_alert_history(env: ActionEnv, device: int) -> None:
    with env.svc.engine.begin() as conn:
        alerts_store.fire_event_alert(conn, "trap", device, labels_key({"k": "v"}), "warning", "disk full", time.time(), "t")
        alert_id = int(sql.one(conn, "SELECT id FROM alerts")[0])
    client = _signed_in(env, "operator")
    page = client.get(f"/alerts/{alert_id}")
    assert page.status_code == 200 and 'id="actions"' in page.text
    link = f"/devices/{device}/actions/touch-file?alert={alert_id}"
    assert f'href="{link}"' in page.text
    confirm = client.get(link + "&param_name=al.txt")
    assert f'name="alert" value="{alert_id}"' in confirm.text and f"alert #{alert_id}" in confirm.text
    expected = re.search(r'name="expected" value="(\w+)"', confirm.text)[1]  # type: ignore[index]
    form = {"csrf_token": form_csrf(confirm.text), "expected": expected, "alert": str(alert_id), "param_name": "al.txt"}
    r = client.post(f"/devices/{device}/actions/touch-file/run", data=form)
    assert r.status_code == 303, r.text
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    assert env.wait(run_id)["alert_id"] == alert_id
    assert (env.scratch / "al.txt").exists()
    history = client.get(f"/alerts/{alert_id}/runs")
    assert history.status_code == 200 and f"/runs/{run_id}" in history.text
    assert f"/runs/{run_id}" in client.get(f"/alerts/{alert_id}").text  # recent runs on the alert page itself
    assert client.get("/alerts/99999/runs").status_code == 404


def test_changing_a_parameter_shows_the_new_command_before_it_runs(env: ActionEnv, device: int) -> None:
    client = _signed_in(env, "operator")
    confirm = client.get(f"/devices/{device}/actions/touch-file", params={"param_name": "second.txt"})
    assert f"touch {env.scratch}/second.txt" in confirm.text
    old = re.search(r'name="expected" value="(\w+)"', confirm.text)[1]  # type: ignore[index]
    r = client.post(
        f"/devices/{device}/actions/touch-file/run",
        data={"csrf_token": form_csrf(confirm.text), "expected": old, "param_name": "third.txt"},
    )
    assert r.status_code == 409 and "not the one you confirmed" in r.text and f"touch {env.scratch}/third.txt" in r.text
    assert not (env.scratch / "third.txt").exists()
    bad = client.get(f"/devices/{device}/actions/touch-file", params={"param_name": "../etc"})
    assert bad.status_code == 422 and "may not contain a &#39;..&#39; path part" in bad.text


def test_a_parameter_without_default_is_asked_for_not_refused_on_the_first_visit(env: ActionEnv, device: int) -> None:
    client = _signed_in(env, "operator")
    first = client.get(f"/devices/{device}/actions/say-word")  # the action link on the device page
    assert first.status_code == 200 and "is required" not in first.text and 'name="param_word"' in first.text
    chosen = client.get(f"/devices/{device}/actions/say-word", params={"param_word": "bye"})
    assert chosen.status_code == 200 and "echo bye" in chosen.text
    empty = client.get(f"/devices/{device}/actions/say-word", params={"param_word": ""})
    assert empty.status_code == 422 and "is required" in empty.text


def test_the_run_page_works_without_javascript(env: ActionEnv, device: int) -> None:
    client = _signed_in(env, "operator")
    confirm = client.get(f"/devices/{device}/actions/count-slowly")
    expected = re.search(r'name="expected" value="(\w+)"', confirm.text)[1]  # type: ignore[index]
    r = client.post(
        f"/devices/{device}/actions/count-slowly/run",
        data={"csrf_token": form_csrf(confirm.text), "expected": expected, "param_upto": "6"},
    )
    page = client.get(r.headers["location"])
    assert "Refresh" in page.text and 'http-equiv="refresh"' not in page.text.lower()
    run_id = int(r.headers["location"].rsplit("/", 1)[1])
    env.wait(run_id)
    done = client.get(r.headers["location"])
    assert "line 6" in done.text and "Refresh" not in done.text


def test_a_dangerous_action_asks_for_the_name_a_reason_and_a_fresh_second_factor(env: ActionEnv, device: int) -> None:
    client = _signed_in(env, "operator")
    confirm = client.get(f"/devices/{device}/actions/wipe-box")
    assert 'name="confirm"' in confirm.text and 'name="reason" required' in confirm.text
    base = {"csrf_token": form_csrf(confirm.text), "expected": re.search(r'name="expected" value="(\w+)"', confirm.text)[1]}  # type: ignore[index]
    r = client.post(f"/devices/{device}/actions/wipe-box/run", data={**base, "confirm": "web-1", "reason": "broken disk"})
    assert r.status_code == 422 and "type the device name web-01" in r.text
    # the last proof of identity is an hour old
    sql.run(env.svc.engine, "UPDATE sessions SET verified_at = :t", t=time.time() - 3600)
    r = client.post(f"/devices/{device}/actions/wipe-box/run", data={**base, "confirm": "web-01", "reason": "broken disk"})
    assert r.status_code == 303 and r.headers["location"].startswith("/account/verify")
    assert not (env.scratch / "wiped").exists()
    whys = [e["detail"]["why"] for e in env.audit("action.refused")]
    assert any("fresh second factor" in w for w in whys) and any("type the device name" in w for w in whys)
    sql.run(env.svc.engine, "UPDATE sessions SET verified_at = :t", t=time.time())
    r = client.post(f"/devices/{device}/actions/wipe-box/run", data={**base, "confirm": "web-01", "reason": "broken disk"})
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    env.wait(int(r.headers["location"].rsplit("/", 1)[1]))
    assert (env.scratch / "wiped").exists()


def test_viewers_see_no_buttons_and_cannot_post(env: ActionEnv, device: int) -> None:
    client = _signed_in(env, "viewer")
    page = client.get(f"/devices/{device}")
    assert "Viewers cannot run actions." in page.text and "/actions/touch-file" not in page.text
    r = client.post(f"/devices/{device}/actions/touch-file/run", data={"csrf_token": form_csrf(page.text), "param_name": "v"})
    assert r.status_code == 403 and "viewers cannot run actions" in r.text
    assert env.audit("action.refused")[0]["username"] == "viewer"
    no_csrf = _signed_in(env, "operator").post(f"/devices/{device}/actions/touch-file/run", data={"param_name": "x"})
    assert no_csrf.status_code == 403 and not (env.scratch / "x").exists()
    # The audit log says it in words: who, what, where and why.
    audit = html.unescape(_signed_in(env, "admin").get("/admin/audit").text)
    assert "viewer was refused touch-file on web-01: viewers cannot run actions; ask an operator (not allowed)" in audit


@pytest.mark.browser
def test_with_javascript_the_output_streams_live(tmp_path: Path, sshd: SshdPeer) -> None:
    scratch = scratch_dir()
    (tmp_path / "actions.yaml").write_text(CATALOG.replace("{base}", str(scratch)))
    settings = Settings(data_dir=tmp_path / "data", actions_file=tmp_path / "actions.yaml")
    try:
        with serve(settings) as live:
            live.user("pat", "operator")
            with live.svc.engine.begin() as conn:
                device = create_device(conn, DeviceSpec.model_validate(ssh_device(sshd)), live.svc.box, 60)
            errors: list[str] = []
            for p, browser in playwright_browser():
                page = phone(p, browser, "Pixel 7").new_page()
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                browser_sign_in(page, live.url, "pat")
                page.goto(f"{live.url}/devices/{device}")
                page.click(f"a[href='/devices/{device}/actions/count-slowly']")  # tap 1
                assert "seq 1 6" in page.inner_text("pre.cmd")
                page.click("form.run-form button[type=submit]")  # tap 2
                page.wait_for_url(re.compile(r".*/runs/\d+$"))
                page.wait_for_selector("#run-output span:has-text('line 2')")  # selectors: the strict CSP forbids eval
                assert page.inner_text("#run-status") == "running"  # output arrived while the command still ran
                page.wait_for_selector("#run[data-finished='yes']", state="attached", timeout=60_000)
                assert page.inner_text("#run-status") == "succeeded"
                assert page.inner_text("#run-output").count("line ") == 6
                assert page.is_hidden("#run-refresh") and page.inner_text("#run-exit") == "0"
                shot(page, "action-run", full_page=True)
                assert not [e for e in errors if "Content Security Policy" in e], errors
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
