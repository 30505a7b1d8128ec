"""A receiver down for two minutes (the worker's clock is advanced, nothing waits for real) gets every queued message
within 5 s of coming back, once each, in order; while it is down one message per back-off tries, and admins see it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.notify import probe
from server.notify.runtime import runtime
from tests.peers.receiver import Receiver, start_receiver
from tests.server.notify_helpers import add_device, bearer, fire, messages, notify_app, wait_until


class Clock:
    """The notification worker's clock, advanced by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


def test_a_receiver_back_after_two_minutes_gets_its_queue_within_5_s_in_order(tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()
    yaml = (f"channels:\n  - {{name: hook, url: \"json://127.0.0.1:{receiver.port}/hook\"}}\n"
            "delivery: {poll_seconds: 0.1, timeout_seconds: 2, lease_seconds: 600, burst: 10}\n")  # default back-off
    with notify_app(tmp_path, yaml) as env:
        worker = runtime(env.svc).worker
        assert worker is not None
        clock = Clock()
        worker.clock = clock
        device = add_device(env.engine)
        fire(env.engine, device, title="core-sw1 problem 0", rule="rule-0")
        # Its failure on record (attempts count at the claim, before the send's answer): until then the channel is
        # healthy as far as the worker knows, and fresh messages to a healthy channel rightly go concurrently.
        wait_until(lambda: any(m.last_error for m in messages(env.engine)), what="a first failed attempt")
        for n in range(1, 4):  # queued while the channel fails: they wait behind the first
            fire(env.engine, device, title=f"core-sw1 problem {n}", rule=f"rule-{n}")
        env.passes()  # the three are planned and queued behind the first
        for _ in range(24):  # two minutes down, in 5 s steps of the worker's clock
            clock.advance(5)
            env.passes(2)
        queued = messages(env.engine)
        assert [m.status for m in queued] == ["pending"] * 4
        tried = [m.attempts for m in queued]
        assert tried[0] >= 3 and tried[1:] == [0, 0, 0], f"one back-off for the channel, one message tries it: {tried}"

        admin = env.user("ada", "admin")
        health = env.client.get("/healthz", headers=bearer(admin)).json()
        assert health["notifications"]["failing_channels"] == ["hook"] and health["status"] == "degraded"
        anonymous = env.client.get("/healthz").json()  # an outside probe sees the count, not the channel's name
        assert anonymous["notifications"]["failing_channels"] == 1 and anonymous["status"] == "degraded"
        page = env.client.get("/", headers=bearer(admin)).text
        assert "Notification channel hook is failing" in page

        receiver.start()
        back = clock()
        while len(receiver.items(lambda r: r.status == 200)) < 4 and clock() - back < 5:
            clock.advance(0.25)
            env.passes(1)  # whatever the worker does in these 0.25 s is done and recorded
        assert clock() - back <= 5, "the queue was not delivered within 5 s of the receiver's return"
        env.passes()  # anything sent twice would have arrived by now
        got = receiver.items()
        assert [r.json["title"] for r in got] == [f"CRITICAL · core-sw1 problem {n}" for n in range(4)]
        assert len({r.json["dedup_key"] for r in got}) == 4
        wait_until(lambda: [m.status for m in messages(env.engine)] == ["sent"] * 4, what="all recorded as sent")
        assert env.client.get("/healthz", headers=bearer(admin)).json()["notifications"]["failing_channels"] == []


@pytest.mark.parametrize(("url", "address"), [
    ("json://127.0.0.1:8080/hook", ("127.0.0.1", 8080)),
    ("https://hooks.example.net/x", ("hooks.example.net", 443)),
    ("smtps://u:p@mail.example.net/?to=a@x", ("mail.example.net", 465)),
    ("tgram://bottoken/chat", None),  # the URL does not name the host it sends to: only deliveries tell
    ("json://127.0.0.1:99999/x", None),
])
def test_the_probe_knows_where_a_channel_sends(url: str, address: tuple[str, int] | None) -> None:
    assert probe.address(url) == address


def test_only_a_channel_that_could_not_connect_is_probed() -> None:
    assert probe.worth_probing("connect [Errno 111] Connection refused")
    assert probe.worth_probing("timeout no answer within 15s") and probe.worth_probing("apprise ConnectionError")
    assert not probe.worth_probing("HTTP 429 slow down")  # it answers: its Retry-After stands
    assert not probe.worth_probing("apprise error=503 busy") and not probe.worth_probing(None)
