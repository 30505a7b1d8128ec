"""One sender per database: a standby serve process's worker never delivers; losing the lease mid-send loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from server.notify.runtime import Notify
from server.notify.worker import SENDER_LEASE, Worker
from server.runtime import Services
from server.store import leases
from server.store import notify as store
from server.store.db import Engine, make_engine
from server.store.notify_records import NewMessage
from tests import sql
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
        notify = svc.notify
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
    worker = svc.notify.worker
    assert isinstance(worker, Worker)
    return worker


def _hand_over(svc: Services, to: Worker) -> None:
    """The leader stalls past its lease and `to` takes the sender lease over (fence + 1), in one transaction."""
    with svc.engine.begin() as conn:
        sql.run(conn, "UPDATE leases SET expires_at = :expires_at WHERE name = :name", expires_at=0.0, name=SENDER_LEASE)
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


def _message(engine: Engine, now: float) -> int:
    with engine.begin() as conn:
        return store.add_message(conn, NewMessage(created_at=now, next_at=now, kind="test", dedup_key="fence-1",
                                                  target_type="channel", target_id=1, user_id=None, payload={}))


def _state(engine: Engine, message_id: int) -> tuple[str, int]:
    with engine.connect() as conn:
        row = sql.one(conn, "SELECT status, attempts FROM notify_messages WHERE id = :id", id=message_id)
        return row.status, row.attempts


@pytest.mark.parametrize("late", ["dead", "retry"])
def test_a_late_result_from_an_expired_claim_never_overwrites_the_new_claim(engine: Engine, late: str) -> None:
    now = time.time()
    message_id = _message(engine, now)
    with engine.begin() as conn:
        (old,) = store.claim_messages(conn, now, 10, 5.0)  # the old sender's claim, then its lease runs out
    with engine.begin() as conn:
        assert store.claim_messages(conn, now + 1, 10, 5.0) == []  # still leased: nobody else takes it
        (new,) = store.claim_messages(conn, now + 6, 10, 5.0)  # expired: the new sender claims it again
    with engine.begin() as conn:
        assert store.finish_message(conn, new, now + 7, "ok", "200", "", 3.0)
    assert _state(engine, message_id) == ("sent", 1)
    with engine.begin() as conn:  # the old sender's answer arrives late: on record, but it does not count
        assert not store.finish_message(conn, old, now + 8, late, "500", "late", 9.0,
                                        next_at=now + 60 if late == "retry" else None)
    assert _state(engine, message_id) == ("sent", 1), "a late result must not reopen or kill a delivered message"
    with engine.connect() as conn:
        results = sql.scalars(conn, "SELECT result FROM notify_deliveries ORDER BY id")
    assert results == ["ok", late]  # both attempts are on record


def test_a_late_dead_never_kills_a_retry_the_new_sender_scheduled(engine: Engine) -> None:
    now = time.time()
    message_id = _message(engine, now)
    with engine.begin() as conn:
        (old,) = store.claim_messages(conn, now, 10, 5.0)
    with engine.begin() as conn:
        (new,) = store.claim_messages(conn, now + 6, 10, 5.0)
        store.finish_message(conn, new, now + 7, "retry", "503", "busy", 3.0, next_at=now + 30)
    with engine.begin() as conn:
        store.finish_message(conn, old, now + 8, "dead", "400", "late refusal", 9.0)
    assert _state(engine, message_id) == ("pending", 1)  # the retry stands: delivered later, never a miss
    with engine.begin() as conn:
        (again,) = store.claim_messages(conn, now + 31, 10, 5.0)
        store.finish_message(conn, again, now + 32, "ok", "200", "", 3.0)
    assert _state(engine, message_id) == ("sent", 2)


# Sends may outlast the claim: httpx's timeout is per read, SMTP and Apprise wait per socket operation.
SLOW = ("delivery: {poll_seconds: 0.2, backoff_seconds: 0.2, backoff_max_seconds: 1, timeout_seconds: 30,"
        " lease_seconds: 40, burst: 1000}\n")


def _turns(worker: Worker, count: int) -> None:
    """`count` passes of the worker, woken at once, without waiting for its sends in flight to end."""
    start, deadline = worker.loops, time.monotonic() + 30
    while worker.loops < start + count:
        assert time.monotonic() < deadline, "the notify worker made no passes"
        worker.kick()
        time.sleep(0.01)


def test_a_slow_send_keeps_its_claim_and_a_send_that_died_is_claimed_again(tmp_path: Path, receiver: Receiver) -> None:
    yaml = f"channels:\n  - {{name: hook, url: \"{receiver.url}/hook\"}}\n" + SLOW
    with notify_app(tmp_path, yaml) as env:
        worker = _leader(env.svc)
        base = worker.clock

        def at(ahead: float) -> Callable[[], float]:
            return lambda: base() + ahead

        def about(name: str) -> list[Any]:
            return receiver.items(lambda r: r.json is not None and r.json.get("title") == f"CRITICAL · {name} is down")

        receiver.answer(200, delay=120)  # a slow service: it answers when released
        slow = receiver.behaviour
        fire(env.engine, add_device(env.engine, "slow-1"), "slow-1 is down")
        wait_until(lambda: about("slow-1"), timeout=30, what="the slow send to reach the receiver")
        (message,) = messages(env.engine)
        for ahead in (30.0, 60.0, 90.0):  # by the worker's clock the send outlasts its 40 s claim twice over
            worker.clock = at(ahead)
            _turns(worker, 3)
            (row,) = messages(env.engine, id=message.id)
            assert row.locked_until > worker.clock(), "the claim of a send in flight is extended"
            assert len(receipts(env.engine, message.id)) == 1, "never claimed again while it is being sent"
        slow.released.set()  # the answer comes at last
        wait_until(lambda: messages(env.engine, id=message.id, status="sent"), timeout=30, what="the slow send recorded")
        assert [r.result for r in receipts(env.engine, message.id)] == ["ok"] and len(about("slow-1")) == 1
        assert messages(env.engine, id=message.id)[0].attempts == 1

        receiver.answer(200, delay=120)
        fire(env.engine, add_device(env.engine, "dies-1"), "dies-1 is down")
        wait_until(lambda: about("dies-1"), timeout=30, what="the second send to reach the receiver")
        (died,) = [m for m in messages(env.engine) if m.id != message.id and m.status == "pending"]
        loop = worker._loop
        assert loop is not None
        for task in list(worker._inflight):  # the send dies without an answer (as in a crash): nobody extends it
            loop.call_soon_threadsafe(task.cancel)
        wait_until(lambda: not worker._inflight, timeout=30, what="the send to end")
        receiver.answer(200)
        _turns(worker, 3)
        assert len(receipts(env.engine, died.id)) == 1, "its claim still holds for the rest of its lease"
        worker.clock = at(90 + 41)  # the claim runs out: the message is claimed and sent again
        env.passes(3)
        assert [r.result for r in receipts(env.engine, died.id)] == ["unknown", "ok"]
        assert len(about("dies-1")) == 2 and messages(env.engine, id=died.id)[0].status == "sent"
