"""Site workers and failover: a `--site` worker alone polls its site; silence raises alerts; a second serve takes over.

Real processes on PostgreSQL and snmpsim (see scaleout_cluster).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.auth import passwords
from server.store import accounts
from tests import sql
from tests.peers.snmpsim import SnmpsimPeer, start_snmpsim, switch_records, write_snmprec
from tests.server.conftest import PASSWORD
from tests.server.scaleout_cluster import INTERVAL, Cluster, cluster, device, due_of, expected_slots

pytestmark = [pytest.mark.pg, pytest.mark.timeout(240)]  # generous: the machine may be shared


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    data = tmp_path_factory.mktemp("simdata")
    write_snmprec(data / "sw.snmprec", switch_records(ports=4))
    peer = start_snmpsim(data)
    yield peer
    peer.stop()


FIRING = (
    "SELECT a.id, d.name FROM alerts a JOIN devices d ON d.id = a.device_id WHERE rule = :r AND labels = :l AND status = 'firing'"
)


def _firing(c: Cluster, rule: str, labels: str) -> list[Any]:
    return c.rows(FIRING, r=rule, l=labels)


def _token(c: Cluster) -> str:
    """An operator's API token, made straight in the database."""
    with c.engine.begin() as conn:
        return accounts.new_token(conn, passwords.create_user(conn, "op", "operator", PASSWORD), "test")


def test_a_site_worker_alone_polls_its_site_and_silence_raises_then_clears_alerts(
    tmp_path: Path, pg_url: str, sim: SnmpsimPeer
) -> None:
    devices = [device("branch-a", sim.port, tags=["site-b"]), device("branch-b", sim.port, tags=["site-b", "core"])]
    devices += [device(f"hq{i}", sim.port) for i in range(3)]
    with cluster(tmp_path, pg_url, devices) as c:
        c.serve(wait=False)  # every process starts side by side
        c.worker("hq-worker", wait=False)
        c.worker("b-worker", site="b", wait=False)
        c.wait_up("serve", "hq-worker", "b-worker")
        since = time.time() + 2.5  # the scheduler re-reads the known sites every 2 s
        c.wait_slots(3)
        names = {r.id: r.name for r in c.rows("SELECT id, name FROM devices")}
        for (device_id, _check), items in c.runs().items():
            late = [worker for slot, worker, _ in items if due_of(device_id, "snmp", slot) > since]
            assert late, names[device_id]
            assert set(late) == ({"b-worker"} if names[device_id].startswith("branch") else {"hq-worker"}), (
                names[device_id],
                late,
            )

        # 'Poll now' from the UI runs on the site's worker too, and waits for the stored result.
        token = _token(c)
        branch = c.scalar("SELECT id FROM devices WHERE name = 'branch-a'")
        port = c.ports["serve"]
        polled = httpx.post(f"http://127.0.0.1:{port}/api/v1/devices/{branch}/poll", headers={"Authorization": f"Bearer {token}"},
                            timeout=60)  # fmt: skip
        assert polled.status_code == 200 and polled.json() == {"ran": 1, "checks": 1}, polled.text
        forced = c.rows("SELECT worker FROM check_runs WHERE device_id = :d AND slot IS NULL", d=branch)
        assert [r.worker for r in forced] == ["b-worker"]
        # A check that keeps running (here: its lock held from outside) past the run in flight and one more: 'poll now'
        # says it did not poll, instead of answering as if it had.
        other = c.scalar("SELECT id FROM devices WHERE name = 'branch-b'")
        with c.engine.connect() as held:
            key = f"{other}:snmp"
            sql.scalar(held, "SELECT pg_advisory_lock(hashtextextended('pocketnoc-check:' || :k, 0))", k=key)
            asked = time.time()
            refused = httpx.post(f"http://127.0.0.1:{port}/api/v1/devices/{other}/poll",
                                 headers={"Authorization": f"Bearer {token}"}, timeout=60)  # fmt: skip
            waited = time.time() - asked
            sql.scalar(held, "SELECT pg_advisory_unlock(hashtextextended('pocketnoc-check:' || :k, 0))", k=key)
        assert refused.status_code == 409 and "still running" in refused.json()["detail"], refused.text
        assert 2 * INTERVAL + 5 <= waited < 30, waited  # the run in flight and one more (an interval each), a margin
        assert not c.scalar("SELECT count(*) FROM check_runs WHERE device_id = :d AND slot IS NULL", d=other)
        assert "was not polled and stored" in (c.root / "b-worker.log").read_text(errors="replace")
        assert (c.root / "data" / "worker-b-worker.alive").exists()  # what the container health check reads

        # The branch's only worker dies: its devices stay with the site (never polled from HQ) and alerts say so.
        c.kill("b-worker")
        killed = time.time()
        c.wait_for(lambda: _firing(c, "site-silent", '{"site":"b"}'), 30, "a site-silent alert", "serve")
        site_alert = _firing(c, "site-silent", '{"site":"b"}')[0]
        assert site_alert.name == "branch-a"  # raised on the site's first device
        c.wait_for(lambda: _firing(c, "worker-silent", '{"worker":"b-worker"}'), 20, "a worker-silent alert", "serve")
        assert not c.scalar("SELECT count(*) FROM check_runs r JOIN devices d ON d.id = r.device_id "
                            "WHERE d.name LIKE 'branch%' AND r.started > :t", t=killed + 1)  # fmt: skip
        assert c.scalar("SELECT status FROM workers WHERE name = 'b-worker'") == "running"  # expected back: no clean stop

        # It comes back (same name): the alerts resolve by themselves.
        c.worker("b-worker", site="b")
        c.wait_for(lambda: not _firing(c, "site-silent", '{"site":"b"}'), 30, "the site alert resolved", "serve")
        c.wait_for(lambda: not _firing(c, "worker-silent", '{"worker":"b-worker"}'), 30, "the worker alert resolved", "serve")
        c.kill("hq-worker", 15)  # a clean stop (SIGTERM) is not silence
        assert c.scalar("SELECT status FROM workers WHERE name = 'hq-worker'") == "stopped"


def test_killing_the_scheduling_serve_process_loses_no_interval(tmp_path: Path, pg_url: str, sim: SnmpsimPeer) -> None:
    devices = [device(f"sw{i}", sim.port) for i in range(6)]
    with cluster(tmp_path, pg_url, devices) as c:
        c.serve("serve-a", wait=False)  # every process starts side by side; whichever serve process leads is killed
        c.serve("serve-b", wait=False)
        c.worker("w1", wait=False)
        c.worker("w2", wait=False)
        c.wait_up("serve-a", "serve-b", "w1", "w2")
        c.wait_for(lambda: c.scalar("SELECT holder FROM leases WHERE name = 'scheduler'"), 20, "a scheduler")
        # The first leader queues the slot current at its start (already late) and the next one together: on a slow
        # machine the late one may still run when the next falls due, which is then skipped by design (no overlap).
        # That is the start, not the failover: slots are judged from one interval after it.
        c.wait_slots(1)
        ready = time.time()
        c.wait_slots(1)
        leader = c.scalar("SELECT holder FROM leases WHERE name = 'scheduler'")
        fence = c.scalar("SELECT fence FROM leases WHERE name = 'scheduler'")
        victim = "serve-a" if str(c.procs["serve-a"].pid) in leader.split(":")[1] else "serve-b"
        c.kill(victim)
        c.wait_for(lambda: c.scalar("SELECT fence FROM leases WHERE name = 'scheduler'") > fence, 20, "a new scheduler")
        c.wait_slots(3)
        until = time.time() - INTERVAL
        runs = c.runs()
    assert len(runs) == 6
    for key, items in runs.items():
        slots = [s for s, _, _ in items]
        assert len(slots) == len(set(slots)), f"{key} ran a slot twice"
        missing = expected_slots(*key, ready, until) - set(slots)
        assert not missing, f"{key} missed {sorted(missing)} across the failover"
