"""After a run pocketnoc re-polls the device and shows whether the alert cleared: real sshd, real polling, real alerts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.sshd import SshdPeer
from tests.server.actions_helpers import ActionEnv, make_env, ssh_device

CATALOG = """
actions:
  - id: make-healthy
    title: Make it healthy
    applies_to: {kinds: [linux], rules: [command-check]}
    ssh: "touch {base}/healthy && echo fixed"
    verify: {ssh: "test -f {base}/healthy", within: 30}
  - id: do-nothing
    title: Do nothing useful
    applies_to: {kinds: [linux]}
    ssh: "echo nothing changed"
    verify: {repoll: true, within: 2}
  - id: break-it
    title: Break it
    danger: low
    ssh: "rm -f {base}/healthy"
    verify: {within: 2}
"""


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    yield from make_env(tmp_path, CATALOG, poll=True, down_after_failures=1)


@pytest.fixture
def device(env: ActionEnv, sshd: SshdPeer) -> int:
    check = {"name": "health", "command": f"test -f {env.scratch}/healthy"}
    return env.add_device(ssh_device(sshd, ssh={"commands": [check]}))


def _poll(env: ActionEnv, device: int) -> dict[str, Any]:
    r = env.client.post(f"/api/v1/devices/{device}/poll", headers=env.headers())
    assert r.status_code == 200, r.text
    return dict(env.client.get(f"/api/v1/devices/{device}", headers=env.headers()).json())


def _alert(env: ActionEnv, device: int) -> dict[str, Any]:
    items = env.client.get(f"/api/v1/alerts?device={device}&state=all", headers=env.headers()).json()["items"]
    found = [a for a in items if a["rule"] == "command-check"]
    assert found, items
    return dict(found[0])


def test_a_fix_is_verified_and_the_alert_resolves(env: ActionEnv, device: int) -> None:
    polled = _poll(env, device)
    assert polled["resources"]["commands"][0]["ok"] is False
    alert = _alert(env, device)
    assert alert["status"] == "firing"
    offered = env.client.get(f"/api/v1/actions?device={device}&alert={alert['id']}", headers=env.headers()).json()["items"]
    assert offered[0]["id"] == "make-healthy" and offered[0]["suggested"] is True
    r = env.run("make-healthy", device, alert=alert["id"], reason="health file missing")
    assert r.status_code == 202, r.text
    run = env.wait(r.json()["id"])
    assert run["status"] == "succeeded" and run["stdout"] == "fixed\n"
    assert run["verification"] == "fixed", run["verification_detail"]
    # It fired seconds ago: the alert stays open until it has stayed clear (flap_settle_seconds), the fix counts now.
    assert f"alert #{alert['id']} cleared (it resolves once it has stayed clear)" in run["verification_detail"]
    assert _alert(env, device)["status"] == "firing"
    events = env.client.get(f"/api/v1/alerts/{alert['id']}", headers=env.headers()).json()["events"]
    notes = [e["text"] for e in events if e["kind"] == "action"]
    assert notes[0].startswith(f"ran Make it healthy (run #{run['id']}): health file missing")
    assert notes[-1] == f"run #{run['id']} Make it healthy: succeeded, verified"
    history = env.client.get(f"/api/v1/runs?alert={alert['id']}", headers=env.headers()).json()["items"]
    assert [h["id"] for h in history] == [run["id"]] and history[0]["verification"] == "fixed"
    assert env.audit("action.verified")[0]["detail"]["verification"] == "fixed"
    page = env.client.get(f"/runs/{run['id']}", headers=env.headers())
    assert "verified" in page.text


def test_a_run_that_does_not_fix_it_says_still_failing(env: ActionEnv, device: int) -> None:
    _poll(env, device)
    alert = _alert(env, device)
    run = env.wait(env.run("do-nothing", device, alert=alert["id"]).json()["id"])
    assert run["status"] == "succeeded"
    assert run["verification"] == "failing" and "still firing" in run["verification_detail"]
    assert _alert(env, device)["status"] == "firing"
    page = env.client.get(f"/alerts/{alert['id']}", headers=env.headers())
    assert "not fixed" in page.text and f"/runs/{run['id']}" in page.text


def test_a_device_run_checks_the_device_state_and_its_alerts(env: ActionEnv, device: int) -> None:
    _poll(env, device)
    fixed = env.wait(env.run("make-healthy", device).json()["id"])
    assert fixed["verification"] == "fixed", fixed["verification_detail"]
    assert "web-01 is up" in fixed["verification_detail"]
    broken = env.wait(env.run("break-it", device).json()["id"])
    assert broken["verification"] == "failing" and "open alerts" in broken["verification_detail"]


def test_the_alert_of_another_device_is_refused(env: ActionEnv, device: int, sshd: SshdPeer) -> None:
    _poll(env, device)
    alert = _alert(env, device)
    other = env.add_device(ssh_device(sshd, name="web-02"))
    r = env.run("do-nothing", other, alert=alert["id"])
    assert r.status_code == 404 and "not an alert of web-02" in r.json()["detail"]
