"""Escalation steps, the dead-man heartbeat and a mass outage's summary, delivered by a real worker to a local receiver."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests import sql
from tests.peers.receiver import Receiver
from tests.server.conftest import sign_in
from tests.server.notify_helpers import add_device, bearer, fire, fire_many, messages, notify_app


def test_escalation_reaches_the_next_step_until_acknowledged(tmp_path: Path, receiver: Receiver) -> None:
    yaml = f"""
channels:
  - {{name: first, url: "{receiver.url}/first"}}
  - {{name: second, url: "{receiver.url}/second"}}
routes:
  - {{name: all, channels: [first], escalation: up}}
escalations:
  - name: up
    loops: 3
    steps:
      - {{after_minutes: 0.02, channels: [second]}}
"""
    with notify_app(tmp_path, yaml) as env:
        operator = env.user("op", "operator")
        alert_id = fire(env.engine, add_device(env.engine))
        receiver.wait_for(1, lambda r: r.path == "/first")
        receiver.wait_for(2, lambda r: r.path == "/second", timeout=30)
        escalated = receiver.items(lambda r: r.path == "/second")[0].json
        assert escalated["kind"] == "escalate" and escalated["title"].endswith("(escalated)")
        assert env.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=bearer(operator)).status_code == 200
        env.settle(ahead=1.0)  # what was due at the acknowledgement went out
        count = len(receiver.items(lambda r: r.path == "/second"))
        env.settle()  # two minutes later for the worker: a step every 1.2 s would have sent many more
        assert len(receiver.items(lambda r: r.path == "/second")) == count <= 3, "no more steps after the acknowledgement"


def test_dead_man_heartbeat_stops_and_the_app_says_silent_since(tmp_path: Path, receiver: Receiver) -> None:
    yaml = f"deadman: {{url: \"{receiver.url}/beat\", interval_seconds: 0.3, silent_after_seconds: 5}}\n"
    with notify_app(tmp_path, yaml) as env:
        token = env.user("pat", "viewer")
        device = add_device(env.engine)
        with env.engine.begin() as conn:  # an enabled device that was just polled: monitoring works
            sql.run(conn, "UPDATE devices SET enabled = :enabled", enabled=True)
            sql.run(conn, "UPDATE device_status SET last_polled = :now", now=time.time())
        receiver.wait_for(2, lambda r: r.path == "/beat" and r.method == "GET")
        status = env.client.get("/api/v1/notify/status", headers=bearer(token)).json()["monitoring"]
        assert status["silent_since"] is None and status["heartbeat"]["ok"] is True
        old = time.time() - 3600
        with env.engine.begin() as conn:
            sql.run(conn, "UPDATE device_status SET last_polled = :old WHERE device_id = :device", old=old, device=device)
        time.sleep(1.0)
        beats = len(receiver.items())
        time.sleep(1.0)  # three heartbeat intervals
        assert len(receiver.items()) == beats, "no heartbeat while monitoring is silent"
        status = env.client.get("/api/v1/notify/status", headers=bearer(token)).json()["monitoring"]
        assert status["silent_since"] == pytest.approx(old) and status["heartbeat"]["status"] == "withheld"
        sign_in(env.client, "pat", "correct horse battery")
        since = time.strftime("%H:%M UTC", time.gmtime(old))
        if time.gmtime(old).tm_yday != time.gmtime().tm_yday:
            since = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(old))
        for path in ("/", "/alerts", "/notify"):  # the overview and alert list say so too, not only the notify page
            page = env.client.get(path)
            assert page.status_code == 200 and f"Monitoring has been silent since {since}" in page.text, path
        with env.engine.begin() as conn:  # results come in again: the banner goes, heartbeats resume
            sql.run(conn, "UPDATE device_status SET last_polled = :now", now=time.time())
        assert "Monitoring has been silent" not in env.client.get("/").text
        receiver.wait_for(beats + 1, lambda r: r.path == "/beat", timeout=30)


def test_a_mass_outage_reaches_a_channel_as_a_few_messages_and_one_summary(tmp_path: Path, receiver: Receiver) -> None:
    yaml = f"channels:\n  - {{name: hook, url: \"json://127.0.0.1:{receiver.port}/x\"}}\n"
    with notify_app(tmp_path, yaml) as env:  # default storm control: burst 3 per minute, then one summary
        ids = [add_device(env.engine, f"access-{i:02d}") for i in range(50)]
        fire_many(env.engine, {device: f"access-{i:02d} is down" for i, device in enumerate(ids)})  # one poll batch
        got = receiver.wait_for(4, timeout=30)
        env.settle(ahead=5.0)  # anything more would have arrived by now (a storm window is a minute: not passed)
        got = receiver.items()
        titles = [r.json["title"] for r in got]
        assert len(got) == 4 and titles[-1] == "47 alerts firing", titles
        summary = got[-1].json["message"]
        assert "access-03 is down" in summary and "… and 33 more" in summary
        assert len(messages(env.engine, status="summarized")) == 47
