"""Two serve processes on one PostgreSQL: live updates reach phones on both; killing the notification sender
with a message in flight loses nothing (the other one delivers it after the lease: at most one duplicate)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth import passwords
from server.store import accounts
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.snmpd import free_udp_port
from tests.server.conftest import PASSWORD
from tests.server.scaleout_cluster import Cluster, cluster, device

pytestmark = [pytest.mark.pg, pytest.mark.timeout(240)]  # generous: the machine may be shared
TRIGGER = ("SELECT m.status FROM notify_messages m JOIN alerts a ON a.id = m.alert_id "
           "WHERE a.rule = 'device-down' AND m.kind = 'trigger'")  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


def _listen(url: str, token: str, into: list[dict[str, Any]], stop: threading.Event) -> threading.Thread:
    """Read the SSE stream of one serve process in a thread, reconnecting like EventSource; `change` events land in `into`."""

    def run() -> None:
        while not stop.is_set():
            try:
                headers = {"Authorization": f"Bearer {token}"}
                with httpx.stream("GET", url + "/live", headers=headers, timeout=httpx.Timeout(10, read=60)) as stream:
                    event = ""
                    for line in stream.iter_lines():
                        if stop.is_set():
                            return
                        if line.startswith("event:"):
                            event = line.split(":", 1)[1].strip()
                        elif line.startswith("data:") and event == "change":
                            into.append(json.loads(line.split(":", 1)[1]))
            except httpx.HTTPError:
                pass  # the process was killed or stopped, or the stream ended: retry like a browser
            stop.wait(0.5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _went(changes: list[dict[str, Any]], device_id: int, state: str) -> bool:
    return any(d["id"] == device_id and d["state"] == state for change in changes for d in change["devices"])


def _token(c: Cluster) -> str:
    """A viewer's API token, made straight in the database (quicker than two CLI runs on a busy machine)."""
    with c.engine.begin() as conn:
        user_id = passwords.create_user(conn, "ops", "viewer", PASSWORD)
        return accounts.new_token(conn, user_id, "phone")


def _attempts(receiver: Receiver, key: str) -> list[Any]:
    return [
        r
        for r in receiver.items(lambda r: r.path == "/hook")
        if r.json.get("dedup_key") == key and r.json.get("kind") == "trigger"
    ]


def _pid_of(holder: str) -> int:
    return int(holder.split("@", 1)[1].split(":")[1])


def test_phones_on_both_servers_see_a_worker_result_and_the_sender_fails_over(
    tmp_path: Path, pg_url: str, receiver: Receiver
) -> None:
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f'channels:\n  - {{name: hook, url: "{receiver.url}/hook"}}\n'
        "delivery: {poll_seconds: 0.3, timeout_seconds: 5, lease_seconds: 6, backoff_seconds: 0.5}\n"
    )
    dead = device("edge-down", free_udp_port(), timeout=1.0)  # nothing answers: unreachable after two polls
    # worker_silent_seconds: no 'nobody polls' alert while the processes start on a busy machine.
    with cluster(tmp_path / "c", pg_url, [dead], channels_file=str(channels), worker_silent_seconds=60) as c:
        receiver.answer(hang=True)  # the first delivery attempt hangs: the message is in flight
        ports = {name: c.serve(name, wait=False) for name in ("serve-a", "serve-b")}  # side by side
        c.wait_up(*ports)
        token = _token(c)
        changes: dict[str, list[dict[str, Any]]] = {name: [] for name in ports}
        stop = threading.Event()
        for name, port in ports.items():
            _listen(f"http://127.0.0.1:{port}", token, changes[name], stop)
        c.worker("w1")
        device_id = c.scalar("SELECT id FROM devices WHERE name = 'edge-down'")

        # The worker's result reaches phones connected to either serve process.
        for name in ports:
            c.wait_for(lambda n=name: _went(changes[n], device_id, "unreachable"), 60, f"a live change on {name}")

        # The sender claimed the alert's message and is waiting on the receiver: kill that process.
        alert_id = c.wait_for(lambda: c.scalar("SELECT id FROM alerts WHERE rule = 'device-down'"), 30, "the alert")
        key = f"pocketnoc-{alert_id}-1"
        c.wait_for(lambda: _attempts(receiver, key), 30, "the first delivery attempt")
        holder, fence = c.rows("SELECT holder, fence FROM leases WHERE name = 'notify'")[0]
        victim = next(n for n in ports if c.procs[n].pid == _pid_of(holder))
        assert c.scalar(TRIGGER) == "pending"
        c.kill(victim)
        receiver.answer(200)

        survivor = next(n for n in ports if n != victim)
        c.wait_for(lambda: c.scalar("SELECT fence FROM leases WHERE name = 'notify'") > fence, 30, "a new sender", survivor)
        c.wait_for(lambda: c.scalar(TRIGGER) == "sent", 60,
                   "the message delivered after the failover", survivor)  # fmt: skip
        assert _pid_of(c.scalar("SELECT holder FROM leases WHERE name = 'notify'")) == c.procs[survivor].pid
        alerts = c.rows("SELECT rule, status FROM alerts WHERE device_id = :d", d=device_id)
        stop.set()

    assert 1 <= len(_attempts(receiver, key)) <= 2, "delivered after the failover, with at most one duplicate"
    assert ("device-down", "firing") in {(r.rule, r.status) for r in alerts}
