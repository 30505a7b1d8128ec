"""Six flaps through the real writer, alert engine, outbox and worker (injected poll times) reach a real receiver as
the first trigger and one "flapping" message, then one "stable again" once the check has stayed up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config.inventory import DeviceSpec
from server.polling.writer import Writer
from server.store.devices import create_device
from server.store.status import CheckOutcome
from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.server.notify_helpers import NotifyEnv, notify_app

SETTLE = 120.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


def _poll(env: NotifyEnv, device_id: int, ts: float, ok: bool) -> None:
    writer = env.svc.writer
    assert isinstance(writer, Writer)
    writer.submit(CheckOutcome(device_id, "tcp", "tcp", ts, ok, ok, 1.0, None if ok else "connection refused"))
    assert writer.flush(30)


def test_six_flaps_are_two_messages_and_one_stable_again(tmp_path: Path, receiver: Receiver) -> None:
    hook = f'channels:\n  - {{name: hook, url: "json://127.0.0.1:{receiver.port}/hook"}}\n'
    with notify_app(tmp_path, hook, down_after_failures=1, flap_settle_seconds=SETTLE) as env:
        with env.engine.begin() as conn:  # added after start: the scheduler does not poll it, the test does
            spec = DeviceSpec.model_validate({"name": "edge-rtr", "address": "127.0.0.1",
                                              "checks": [{"type": "tcp", "port": 9}]})
            device_id = create_device(conn, spec, env.svc.box, 30)
        t = time.time()
        _poll(env, device_id, t, True)
        for flap in range(6):  # down 30 s, up 30 s, six times: a bad cable
            t += 30
            _poll(env, device_id, t, False)
            if flap == 0:
                receiver.wait_for(1, timeout=30)  # the first trigger goes out at once
            t += 30
            _poll(env, device_id, t, True)
        time.sleep(1.0)  # anything more the flaps would send has arrived by now
        titles = [r.json["title"] for r in receiver.items()]
        assert titles == ["CRITICAL · edge-rtr is unreachable", "CRITICAL · edge-rtr is unreachable (flapping)"]

        _poll(env, device_id, t + SETTLE - 1, True)  # not settled yet: still one open alert, nothing sent
        with env.engine.connect() as conn:
            found = sql.rows(conn, "SELECT status, flapping FROM alerts")
            assert [(r.status, bool(r.flapping)) for r in found] == [("firing", True)]
        _poll(env, device_id, t + SETTLE, True)  # up for the settle time: stable again
        arrived = receiver.wait_for(3, timeout=30)
        assert arrived[2].json["title"] == "Stable again · edge-rtr is unreachable"
        assert {r.json["dedup_key"] for r in arrived} == {"pocketnoc-1-1"}
        time.sleep(0.5)
        assert len(receiver.items()) == 3
        with env.engine.connect() as conn:
            assert sql.scalars(conn, "SELECT status FROM alerts") == ["resolved"]


def test_an_acknowledged_alert_that_starts_flapping_sends_nothing_more(tmp_path: Path, receiver: Receiver) -> None:
    """Someone is on it: the flap shows on the alert page, the phone does not buzz again."""
    from server.store import alerts as alert_store

    hook = f'channels:\n  - {{name: hook, url: "json://127.0.0.1:{receiver.port}/hook"}}\n'
    with notify_app(tmp_path, hook, down_after_failures=1, flap_settle_seconds=SETTLE) as env:
        with env.engine.begin() as conn:
            spec = DeviceSpec.model_validate({"name": "edge-rtr", "address": "127.0.0.1",
                                              "checks": [{"type": "tcp", "port": 9}]})
            device_id = create_device(conn, spec, env.svc.box, 30)
        t = time.time()
        _poll(env, device_id, t, True)
        t += 30
        _poll(env, device_id, t, False)
        receiver.wait_for(1, timeout=30)
        with env.engine.begin() as conn:
            alert_id = sql.one(conn, "SELECT id FROM alerts")[0]
            assert alert_store.acknowledge(conn, alert_id, "oncall", "on it")
        for _flap in range(4):
            t += 30
            _poll(env, device_id, t, True)
            t += 30
            _poll(env, device_id, t, False)
        time.sleep(1.0)
        assert [r.json["title"] for r in receiver.items()] == ["CRITICAL · edge-rtr is unreachable"]
        with env.engine.connect() as conn:
            assert [bool(f) for f in sql.scalars(conn, "SELECT flapping FROM alerts")] == [True]
