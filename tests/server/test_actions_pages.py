"""Action pages from the phone: the panel, the confirmation (exact command), the run page without and with JavaScript."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright
from sqlalchemy import update

from server.app import create_app
from server.settings import Settings
from server.store.schema import sessions
from tests.peers.sshd import SshdPeer, free_port
from tests.server.actions_helpers import ActionEnv, make_env, scratch_dir, ssh_device, sshd  # noqa: F401 - fixture
from tests.server.conftest import PASSWORD, form_csrf, sign_in

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
"""
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    yield from make_env(tmp_path, CATALOG, poll=False)


@pytest.fixture
def device(env: ActionEnv, sshd: SshdPeer) -> int:  # noqa: F811 - the sshd fixture
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
    with env.svc.engine.begin() as conn:  # the last proof of identity is an hour old
        conn.execute(update(sessions).values(verified_at=time.time() - 3600))
    r = client.post(f"/devices/{device}/actions/wipe-box/run", data={**base, "confirm": "web-01", "reason": "broken disk"})
    assert r.status_code == 303 and r.headers["location"].startswith("/account/verify")
    assert not (env.scratch / "wiped").exists()
    whys = [e["detail"]["why"] for e in env.audit("action.refused")]
    assert any("fresh second factor" in w for w in whys) and any("type the device name" in w for w in whys)
    with env.svc.engine.begin() as conn:
        conn.execute(update(sessions).values(verified_at=time.time()))
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


@pytest.mark.browser
def test_with_javascript_the_output_streams_live(tmp_path: Path, sshd: SshdPeer) -> None:  # noqa: F811
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing (make test installs it)")
    scratch = scratch_dir()
    (tmp_path / "actions.yaml").write_text(CATALOG.replace("{base}", str(scratch)))
    app = create_app(Settings(data_dir=tmp_path / "data", actions_file=tmp_path / "actions.yaml"), poll=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        from server.auth import create_user
        from server.store.devices import create_device

        svc = app.state.services
        with svc.engine.begin() as conn:
            create_user(conn, "pat", "operator", PASSWORD)
            from server.inventory import DeviceSpec

            device = create_device(conn, DeviceSpec.model_validate(ssh_device(sshd)), svc.box, 60)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            context = browser.new_context(**p.devices["Pixel 7"])
            context.set_default_timeout(30_000)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"http://127.0.0.1:{port}/login?next=/devices/{device}")
            page.fill("input[name=username]", "pat")
            page.fill("input[name=password]", PASSWORD)
            page.click("form[action='/login'] button[type=submit]")
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
            page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
            assert not [e for e in errors if "Content Security Policy" in e], errors
            browser.close()
    finally:
        server.should_exit = True
        thread.join(30)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
