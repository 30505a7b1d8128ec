"""One sender per database: a standby serve process's worker never delivers; losing the lease mid-send loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from server.notify.runtime import Notify
from server.notify.worker import SENDER_LEASE, Worker
from server.services import Services
from server.store import leases
from server.store.db import make_engine
from server.store.schema import leases as leases_table
from tests.peers.receiver import Receiver, start_receiver
from tests.server.notify_helpers import add_device, fire, messages, notify_app, receipts, wait_until

# A message lease far longer than the slow send below, so the new sender cannot take that message over meanwhile.
DELIVERY = ("delivery: {poll_seconds: 0.2, backoff_seconds: 0.2, backoff_max_seconds: 1, timeout_seconds: 10,"
            " lease_seconds: 60, burst: 1000}\n")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


class Standby:
    """A second sender on the same database, as another serve process has: its own engine, event loop and worker."""

    def __init__(self, svc: Services) -> None:
        notify = svc.extra["notify"]
        assert isinstance(notify, Notify)
        self.engine = make_engine(svc.engine.url.render_as_string(hide_password=False))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.worker = Worker(self.engine, svc.box, lambda: notify.config, notify.keys, None,
                             lease_seconds=svc.settings.lease_seconds)

        async def start() -> None:
            self.worker.start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.worker.stop(2.0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
        self.engine.dispose()


def _leader(svc: Services) -> Worker:
    worker = svc.extra["notify"].worker
    assert isinstance(worker, Worker)
    return worker


def _hand_over(svc: Services, to: Worker) -> None:
    """The leader stalls past its lease and `to` takes the sender lease over (fence + 1), in one transaction."""
    with svc.engine.begin() as conn:
        conn.execute(update(leases_table).where(leases_table.c.name == SENDER_LEASE).values(expires_at=0.0))
        assert leases.acquire(conn, SENDER_LEASE, to.holder, to.lease_seconds) is not None


def test_a_standby_sender_never_delivers(tmp_path: Path, receiver: Receiver) -> None:
    yaml = f"channels:\n  - {{name: hook, url: \"{receiver.url}/hook\"}}\n" + DELIVERY
    with notify_app(tmp_path, yaml) as env:
        leader = _leader(env.svc)
        wait_until(lambda: leader.fence is not None, what="the app's worker to hold the sender lease")
        standby = Standby(env.svc)
        try:
            for i in range(20):
                fire(env.engine, add_device(env.engine, f"d{i}"), f"d{i} is down")
            got = receiver.wait_for(20, timeout=60)
            wait_until(lambda: len(messages(env.engine, status="sent")) == 20, what="20 messages recorded as sent")
            time.sleep(1.0)  # a second sender would have sent its copies by now
            keys = [r.json["dedup_key"] for r in receiver.items()]
            assert len(got) == len(keys) == len(set(keys)) == 20, "each alert delivered once"
            assert (leader.sent, standby.worker.sent, standby.worker.failed) == (20, 0, 0)
            assert standby.worker.fence is None, "the standby stands by"
        finally:
            standby.close()


def test_losing_the_lease_mid_send_records_the_result_and_the_new_sender_takes_over(tmp_path: Path,
                                                                                    receiver: Receiver) -> None:
    yaml = f"channels:\n  - {{name: hook, url: \"{receiver.url}/hook\"}}\n" + DELIVERY
    with notify_app(tmp_path, yaml) as env:
        old = _leader(env.svc)
        wait_until(lambda: old.fence is not None, what="the app's worker to hold the sender lease")
        old_fence = old.fence
        standby = Standby(env.svc)
        try:
            receiver.answer(200, delay=2.0)  # a slow service: the send is in flight while the lease moves
            fire(env.engine, add_device(env.engine, "slow-1"), "slow-1 is down")
            receiver.wait_for(1, timeout=30)
            _hand_over(env.svc, standby.worker)
            assert old.fence == old_fence
            with env.engine.connect() as conn:  # the old sender's fence is stale: any claim it starts now is refused
                assert not leases.fenced(conn, SENDER_LEASE, old.holder, int(old_fence or 0))
            first = wait_until(lambda: messages(env.engine, status="sent"), timeout=30, what="the in-flight result")[0]
            assert [r.result for r in receipts(env.engine, first.id)] == ["ok"], "recorded once, by the sender that sent it"
            wait_until(lambda: old.sent == 1, what="the old sender to count its send")
            assert old.fence is None, "the old sender recorded its send, then stood by"
            receiver.answer(200)
            fire(env.engine, add_device(env.engine, "next-1"), "next-1 is down")
            receiver.wait_for(2, timeout=30)
            wait_until(lambda: len(messages(env.engine, status="sent")) == 2, what="the second message sent")
            time.sleep(1.0)
            assert [r.json["title"] for r in receiver.items()] == ["CRITICAL · slow-1 is down", "CRITICAL · next-1 is down"]
            assert (old.sent, standby.worker.sent) == (1, 1), "the new sender sends; the old one never does again"
        finally:
            standby.close()
