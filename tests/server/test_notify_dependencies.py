"""A parent outage is one message: real snmpd per device, a real webhook receiver, the planner's clock driven by the test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from server.auth.passwords import create_user
from server.config.loader import load_config
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.notify import planner, runtime
from server.notify.config import NotifyConfig
from server.notify.runtime import sync_file_channels
from server.store import accounts
from server.store.db import Engine
from server.web.app import create_app
from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.snmpd import SnmpdPeer, start_snmpd
from tests.server.conftest import PASSWORD, sign_in
from tests.server.notify_helpers import add_device, fire, messages

CHILDREN = 5
INTERVAL = 3600  # the scheduler never polls on its own during the test: the test polls


class Clock:
    """Real time, or real time plus a skip while the test looks ahead (the devices' polls stay on real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    @contextmanager
    def ahead(self, seconds: float) -> Iterator[None]:
        self.offset = seconds
        try:
            yield
        finally:
            self.offset = 0.0


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[list[SnmpdPeer]]:
    started: list[SnmpdPeer] = []
    try:
        for i in range(CHILDREN + 1):
            started.append(start_snmpd(tmp_path / f"dev{i}"))
        yield started
    finally:
        for peer in started:
            peer.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


def _app(tmp_path: Path, peers: list[SnmpdPeer], receiver: Receiver) -> Any:
    lines = ["settings:", "  down_after_failures: 2", "  snmp_timeout: 0.5", "  snmp_retries: 0", "devices:"]
    for i, peer in enumerate(peers):
        lines += [f"  - name: {'core-sw' if i == 0 else f'access-{i}'}", "    address: 127.0.0.1", f"    interval: {INTERVAL}",
                  f"    snmp: {{version: 2c, port: {peer.port}, community: {peer.community}}}"]
        if i:
            lines.append("    parent: core-sw")
    conf = tmp_path / "pocketnoc.yaml"
    conf.write_text("\n".join(lines) + "\n")
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"channels:\n  - {{name: hook, url: \"json://127.0.0.1:{receiver.port}/hook\"}}\n"
                        "delivery: {poll_seconds: 0.1, burst: 100}\n")
    config = load_config(conf)
    # flap_settle_seconds=0: an outage of seconds is not a flap here; the flapping guard has its own tests
    return create_app(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, channels_file=channels,
                               flap_settle_seconds=0, **config.settings), config)


def _poll(client: TestClient, app: Any, names: list[str]) -> None:
    svc = app.state.services
    by_name = {job.device: job.device_id for job in svc.dispatcher.jobs.values()}

    async def run() -> None:
        await asyncio.gather(*(svc.dispatcher.run_now(by_name[n]) for n in names))

    assert client.portal is not None
    client.portal.call(run)
    assert svc.writer.flush(30)


def _settle(app: Any) -> None:
    """Let the notification worker finish two whole passes over what is committed now."""
    worker = runtime.runtime(app.state.services).worker
    assert worker is not None
    worker.kick()
    start = worker.loops
    deadline = time.monotonic() + 10
    while worker.loops < start + 3 or worker._inflight or worker._results:
        # Sends finished and on record: a send the receiver has but the worker has not recorded yet would look like
        # a lost claim once the clock jumps past its lease, and be sent again (at-least-once, same dedup key).
        assert time.monotonic() < deadline, "the notification worker stalled"
        worker.kick()
        time.sleep(0.02)


def _alerts(client: TestClient, headers: dict[str, str], state: str) -> list[dict[str, Any]]:
    r = client.get("/api/v1/alerts", params={"state": state}, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_parent_and_five_children_down_together_is_one_message_and_one_resolve(
    tmp_path: Path, peers: list[SnmpdPeer], receiver: Receiver
) -> None:
    app = _app(tmp_path, peers, receiver)
    children = [f"access-{i}" for i in range(1, CHILDREN + 1)]
    with TestClient(app, follow_redirects=False) as client:
        clock = Clock()
        worker = runtime.runtime(app.state.services).worker
        assert worker is not None
        worker.clock = clock
        with app.state.services.engine.begin() as conn:
            token = accounts.new_token(conn, create_user(conn, "ops", "operator", PASSWORD), "t")
        ops = {"Authorization": f"Bearer {token}"}
        _poll(client, app, ["core-sw", *children])
        for peer in peers:  # everything behind the core switch goes dark with it
            peer.stop()
        _poll(client, app, ["core-sw", *children])  # first failure of each: soft, nothing fires
        # The children's second failure lands before the parent's: their alerts fire while the parent still looks up.
        _poll(client, app, children)
        assert len(_alerts(client, ops, "firing")) == CHILDREN
        _settle(app)
        assert receiver.items() == [], "a child's alert went out before its parent's state was known"
        _poll(client, app, ["core-sw"])
        got = receiver.wait_for(1, timeout=10)
        _settle(app)
        with clock.ahead(INTERVAL + 60):  # well past every hold-off: still the one message
            _settle(app)
        assert len(receiver.items()) == 1, [r.json for r in receiver.items()]
        body = got[0].json
        assert "core-sw" in body["title"] and f"+{CHILDREN} behind it" in body["title"]
        assert all(name in body["message"] for name in children), body["message"]
        hidden = _alerts(client, ops, "suppressed")
        assert sorted(a["device"]["name"] for a in hidden) == children
        # "Unreachable because of its parent" is a state of its own on the pages and in the API.
        devices = client.get("/api/v1/devices", headers=ops).json()["items"]
        assert {d["name"]: d["behind"] for d in devices} == {"core-sw": None, **{c: "core-sw" for c in children}}
        sign_in(client, "ops")
        page = client.get("/")
        assert page.status_code == 200 and page.text.count("behind core-sw") == CHILDREN, page.text[:300]
        # Recovery: the parent answers first; its dependents get one poll before anything about them is sent.
        for peer in peers:
            peer.start()
        _poll(client, app, ["core-sw"])
        _settle(app)
        assert len(receiver.items()) == 1, "children uncovered by the parent's recovery were sent before their grace"
        _poll(client, app, children)
        resolved = receiver.wait_for(2, timeout=10)[1].json
        _settle(app)  # its send recorded before the clock jumps past its claim's lease
        with clock.ahead(INTERVAL + 60):
            _settle(app)
        assert len(receiver.items()) == 2, [r.json for r in receiver.items()]
        assert resolved["title"].startswith("Resolved") and "core-sw" in resolved["title"]
        assert f"Recovered with it ({CHILDREN})" in resolved["message"]
        assert all(name in resolved["message"] for name in children)
        assert _alerts(client, ops, "open") == []


def test_a_parent_waits_for_a_dependent_going_down_then_names_it(engine: Engine) -> None:
    """The parent's failure is confirmed first while its child has only failed once: the one message still names it."""
    config = NotifyConfig.model_validate({"channels": [{"name": "ops", "url": "json://127.0.0.1:9/ops"}]})
    with engine.begin() as conn:
        sync_file_channels(conn, SecretBox(Fernet.generate_key()), config, time.time())
    parent = add_device(engine, "core-sw", state="unreachable")
    child = add_device(engine, "access-1", parent=parent)
    with engine.begin() as conn:
        sql.run(conn, "UPDATE devices SET enabled = :enabled", enabled=True)
        failing = {"snmp": {"ok": False, "answered": False, "fails": 1}}
        sql.update(conn, "device_status", "device_id = :child", {"checks": failing}, child=child)
    fire(engine, parent, "core-sw is unreachable")
    now = time.time()
    with engine.begin() as conn:
        planner.plan(conn, config, now)
    assert messages(engine) == [], "the parent's message went out before its failing dependent was settled"
    with engine.begin() as conn:
        sql.run(conn, "UPDATE device_status SET state = :state WHERE device_id = :child", state="unreachable", child=child)
    child_alert = fire(engine, child, "access-1 is unreachable")
    with engine.begin() as conn:
        sql.run(conn, "UPDATE alerts SET suppressed_by = :parent WHERE id = :id", parent=parent, id=child_alert)
        planner.plan(conn, config, now + 1.5)
    sent = messages(engine)
    assert [m.payload["device"] for m in sent] == ["core-sw"]
    assert sent[0].payload["dependents"] == ["access-1"] and sent[0].payload["dependents_count"] == 1
