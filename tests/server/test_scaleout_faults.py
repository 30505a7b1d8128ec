"""Faults of a scaled-out install, each against the real PostgreSQL with real serve and worker processes:
PostgreSQL dropping every connection, a worker cut off for longer than its heartbeat limit, the leading serve
process stopped and killed. In each: no device goes unpolled for more than two intervals, no slot's result is
lost or applied twice, and the down device's alert is notified exactly once.

PostgreSQL is shared with other test sessions on this machine, so its restart is simulated by ending every
backend of the test's own database (pg_terminate_backend): to the processes it is the same as a restart.
The cut lasts 10 s here: with the tests' 1 s heartbeats that is three times past the 3-beat limit, which is
what a 30 s cut is with the default 5 s heartbeats.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.snmpd import free_udp_port
from tests.peers.snmpsim import SnmpsimPeer, start_snmpsim, switch_records, write_snmprec
from tests.peers.tcpproxy import TcpProxy
from tests.server.scaleout_cluster import INTERVAL, Cluster, device, expected_slots

pytestmark = [pytest.mark.pg, pytest.mark.timeout(240)]
CUT_SECONDS = 10.0


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SnmpsimPeer, Receiver]]:
    """The switches' agent and the webhook receiver, shared by the module's tests (each reads its own deliveries)."""
    data = tmp_path_factory.mktemp("simdata")
    write_snmprec(data / "sw.snmprec", switch_records(ports=4))
    sim, receiver = start_snmpsim(data), start_receiver()
    yield sim, receiver
    receiver.stop()
    sim.stop()


def _install(tmp_path: Path, pg_url: str, peers: tuple[SnmpsimPeer, Receiver]) -> Cluster:
    sim, receiver = peers
    channels = tmp_path / "channels.yaml"
    channels.write_text(
        f'channels:\n  - {{name: hook, url: "{receiver.url}/hook"}}\n'
        "delivery: {poll_seconds: 0.3, timeout_seconds: 5, lease_seconds: 6, backoff_seconds: 0.5}\n"
    )
    devices = [device(f"sw{i}", sim.port) for i in range(6)] + [device("gone", free_udp_port(), timeout=1.0)]
    return Cluster(tmp_path / "c", pg_url, devices, {"channels_file": str(channels), "worker_silent_seconds": 60})


def _ready(c: Cluster, *workers: str) -> float:
    c.wait_up(*c.ports)  # the serve processes, started side by side with the workers
    for name in workers:
        c.wait_for(lambda n=name: c.scalar("SELECT queue_worker_id FROM workers WHERE name = :n", n=n), 60, f"{name} up", name)
    c.wait_for(lambda: c.scalar("SELECT count(*) FROM worker_shards") == len(workers), 30, "every worker given a shard")
    return time.time()


def _assert_held(c: Cluster, receiver: Receiver, since: float, until: float) -> dict[str, int]:
    """Every check polled at least every other slot in [since, until], no slot applied twice, one notification."""
    runs = c.runs()
    per_worker: dict[str, int] = {}
    for key, items in runs.items():
        slots = [slot for slot, _, _ in items]
        assert len(slots) == len(set(slots)), f"{key} applied a slot twice: {slots}"
        wanted = sorted(expected_slots(*key, since, until))
        missing = [s for s in wanted if s not in set(slots)]
        assert not any(s + 1 in missing for s in missing), f"{key} unpolled for two intervals or more: {missing}"
        assert len(missing) <= 2, f"{key} missed {missing}"
        for _, worker, _ in items:
            per_worker[worker] = per_worker.get(worker, 0) + 1
    assert len(runs) == 7
    alerts = c.rows("SELECT id FROM alerts WHERE rule = 'device-down'")
    assert len(alerts) == 1, alerts  # the down device: one alert, not one per worker or per retry
    triggers = c.scalar("SELECT count(*) FROM notify_messages WHERE kind = 'trigger' AND alert_id = :a", a=alerts[0].id)
    assert triggers == 1
    c.wait_for(lambda: c.scalar("SELECT count(*) FROM notify_messages WHERE status = 'sent'") >= 1, 30, "delivery")
    key = f"pocketnoc-{alerts[0].id}-1"
    sent = [r for r in receiver.items(lambda r: r.path == "/hook" and r.ts > since - 4 * INTERVAL)
            if r.json.get("dedup_key") == key]  # fmt: skip
    assert len(sent) == 1, sent
    return per_worker


def test_postgresql_dropping_every_connection(tmp_path: Path, pg_url: str, peers: tuple[SnmpsimPeer, Receiver]) -> None:
    c = _install(tmp_path, pg_url, peers)
    receiver = peers[1]
    try:
        c.serve(wait=False)
        c.worker("w1", wait=False)
        c.worker("w2", wait=False)
        ready = _ready(c, "w1", "w2")
        c.wait_slots(2)
        database = urlsplit(pg_url).path.lstrip("/")
        others = "FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
        for cut in range(2):  # twice: a restart is not one clean cut either
            if cut:  # the second cut comes while they reconnect, once they have their sessions back
                c.wait_for(lambda: c.scalar(f"SELECT count(*) {others}", d=database) >= 6, 30, "the processes reconnecting")
            ended = c.scalar(f"SELECT count(pg_terminate_backend(pid)) {others}", d=database)
            assert ended >= 6  # serve, both workers (queue pools, listeners, locks, writers)
        c.engine.dispose()  # the test's own pool was ended too
        c.wait_slots(4, "serve", "w1", "w2")
        for name in ("serve", "w1", "w2"):
            c.check_alive(name)
        _assert_held(c, receiver, ready + INTERVAL, time.time() - INTERVAL)
    finally:
        c.stop()


def test_a_worker_cut_off_longer_than_its_heartbeat_limit(
    tmp_path: Path, pg_url: str, peers: tuple[SnmpsimPeer, Receiver]
) -> None:
    url = urlsplit(pg_url)
    host = url.hostname or "127.0.0.1"
    proxy = TcpProxy((host, url.port or 5432)).start()
    c = _install(tmp_path, pg_url, peers)
    receiver = peers[1]
    try:
        c.serve(wait=False)
        c.worker("w1", wait=False)
        c.worker("w2", wait=False, database_url=sql.url_via(pg_url, host, proxy.port))
        ready = _ready(c, "w1", "w2")
        c.wait_slots(2)
        shard = c.scalar("SELECT devices FROM worker_shards WHERE name = 'w2'")
        assert shard and shard < 7
        proxy.pause()
        cut_at = time.time()
        # The leader stops counting w2 as live after 3 missed heartbeats, ends its sessions (its locks go with
        # them) and gives its devices and its queued batches to w1.
        c.wait_for(lambda: c.scalar("SELECT devices FROM worker_shards WHERE name = 'w1'") == 7, 20, "w1 takes all")
        assert time.time() - cut_at < 2 * INTERVAL
        while time.time() < cut_at + CUT_SECONDS:  # the cut's length (the fault): w2 lives through it, cut off
            c.check_alive("w2")
            time.sleep(min(0.5, max(0.0, cut_at + CUT_SECONDS - time.time())))
        proxy.resume()
        # Back: w2 reconnects, reports, and its devices come back to it (no one else's move).
        c.wait_for(lambda: c.scalar("SELECT devices FROM worker_shards WHERE name = 'w2'") == shard, 30, "w2 back")
        c.wait_slots(2)
        assert c.procs["w2"].poll() is None, "w2 exited after the cut instead of taking jobs again"
        back = c.scalar("SELECT count(*) FROM check_runs WHERE worker = 'w2' AND started > :t", t=cut_at + CUT_SECONDS)
        assert back > 0, "w2 polled nothing after the cut"
        per_worker = _assert_held(c, receiver, ready + INTERVAL, time.time() - INTERVAL)
        assert per_worker.get("w2", 0) > 0
        late = [r for r in c.rows("SELECT worker, started FROM check_runs WHERE worker = 'w2' AND started > :a AND "
                                  "started < :b", a=cut_at + 4, b=cut_at + CUT_SECONDS)]  # fmt: skip
        assert not late, late  # nothing w2 ran during the cut was applied (it could not know it had lost its devices)
        assert "its devices go to others" in (c.root / "serve.log").read_text(errors="replace")
    finally:
        c.stop()
        proxy.stop()


def test_the_leading_serve_process_stopped_then_killed(
    tmp_path: Path, pg_url: str, peers: tuple[SnmpsimPeer, Receiver]
) -> None:
    c = _install(tmp_path, pg_url, peers)
    receiver = peers[1]
    try:
        c.serve("a", wait=False)
        c.serve("b", wait=False)
        c.worker("w1", wait=False)
        c.worker("w2", wait=False)
        ready = _ready(c, "w1", "w2")
        c.wait_slots(2)

        def leader() -> str:
            holder = c.scalar("SELECT holder FROM leases WHERE name = 'scheduler' AND expires_at > extract(epoch FROM now())")
            pid = int(str(holder).split("@", 1)[1].split(":")[1]) if holder else 0
            return next((n for n in ("a", "b") if n in c.procs and c.procs[n].pid == pid), "")

        first = c.wait_for(leader, 10, "a leader")
        c.kill(first, signal.SIGTERM)  # hands the lease over at once
        second = c.wait_for(leader, 10, "the other one leads")
        assert second != first
        c.serve(first, wait=False)  # restarted: it starts (a standby) while the other one leads these slots alone
        c.wait_slots(2)
        c.wait_up(first)
        assert leader() == second
        c.kill(second)  # SIGKILL: the lease must expire first
        c.wait_for(lambda: leader() == first, 20, "the restarted one leads")
        c.wait_slots(2)
        _assert_held(c, receiver, ready + INTERVAL, time.time() - INTERVAL)
    finally:
        c.stop()
