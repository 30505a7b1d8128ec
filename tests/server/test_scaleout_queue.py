"""Scaled-out polling end to end: serve + three `pocketnoc worker` processes on PostgreSQL, devices on snmpsim.

Every scheduled check runs exactly once per interval slot, spread over the workers; a worker
SIGKILLed in the middle of a poll loses that one slot and nothing after it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.snmpd import free_udp_port
from tests.peers.snmpsim import SnmpsimPeer, start_snmpsim, switch_records, write_snmprec
from tests.server.scaleout_cluster import INTERVAL, cluster, device, due_of, expected_slots

pytestmark = [pytest.mark.pg, pytest.mark.timeout(240)]  # generous: the machine may be shared


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    data = tmp_path_factory.mktemp("simdata")
    write_snmprec(data / "sw.snmprec", switch_records(ports=8))
    peer = start_snmpsim(data)
    yield peer
    peer.stop()


RATES_SQL = """
SELECT DISTINCT s.device_id, p.ts FROM samples p JOIN series s ON s.id = p.series_id WHERE right(s.metric, 4) = '_bps'
"""
VICTIM_SQL = """
SELECT w.name, (j.args->>'device_id')::int AS device_id, j.args->>'check' AS check_name, (j.args->>'timestamp')::bigint AS slot
FROM procrastinate_jobs j JOIN workers w ON w.queue_worker_id = j.worker_id
WHERE j.status = 'doing' AND w.status = 'running' AND (j.args->>'device_id')::int = ANY(:dead)
"""


def test_every_check_runs_once_per_interval_and_a_killed_worker_loses_one_slot_at_most(
    tmp_path: Path, pg_url: str, sim: SnmpsimPeer
) -> None:
    dead_port = free_udp_port()  # nothing answers there: each poll of a dead device stays in flight ~3 s
    devices = [device(f"sw{i}", sim.port) for i in range(9)] + [device(f"dead{i}", dead_port, timeout=3.0) for i in range(3)]
    with cluster(tmp_path, pg_url, devices) as c:
        c.serve()
        for name in ("w1", "w2", "w3"):
            c.worker(name, wait=False)
        for name in ("w1", "w2", "w3"):
            c.wait_for(
                lambda n=name: c.scalar("SELECT queue_worker_id FROM workers WHERE name = :n", n=n), 60, f"{name} up", name
            )
        ready = time.time()
        dead = [r.id for r in c.rows("SELECT id FROM devices WHERE name LIKE 'dead%'")]
        checks = {(r.id, "snmp") for r in c.rows("SELECT id FROM devices")}

        # Wait for two full intervals, then catch a worker in the middle of a (slow) poll and SIGKILL it.
        time.sleep(2 * INTERVAL)
        victim = c.wait_for(lambda: c.rows(VICTIM_SQL, dead=dead), 30, "a dead-device poll in flight")[0]
        c.kill(victim.name)
        killed_at = time.time()
        survivors = {"w1", "w2", "w3"} - {victim.name}

        # Four more intervals: the others go on; the leader reaps the dead worker's job and raises an alert.
        time.sleep(4 * INTERVAL)
        c.wait_for(
            lambda: (
                not c.scalar(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' "
                    "AND (args->>'timestamp')::bigint = :s AND (args->>'device_id')::int = :d",
                    s=victim.slot,
                    d=victim.device_id,
                )
            ),
            20,
            "the stuck job reaped",
        )
        c.wait_for(
            lambda: c.scalar(
                "SELECT count(*) FROM alerts WHERE rule = 'worker-silent' AND status = 'firing' AND labels = :l",
                l='{"worker":"' + victim.name + '"}',
            ),
            20,
            "a worker-silent alert",
        )
        until = time.time() - INTERVAL  # slots due before this have surely finished (3 s timeouts included)
        runs = c.runs()
        # Counter rates need the previous poll's values, whichever worker made it (handed over in the database).
        rated: dict[int, set[int]] = {}
        for r in c.rows(RATES_SQL):
            rated.setdefault(r.device_id, set()).add(int(r.ts))
        later = c.rows("SELECT device_id, started FROM check_runs WHERE ok AND due > :t", t=ready + INTERVAL)

    assert set(runs) == checks
    per_worker: dict[str, int] = {}
    for key, items in runs.items():
        slots = [slot for slot, _, _ in items]
        assert len(slots) == len(set(slots)), f"{key} ran a slot twice: {slots}"
        wanted = expected_slots(*key, ready + INTERVAL, until)  # the first slot may still overlap the start-up backlog
        missing = wanted - set(slots)
        assert len(missing) <= 1, f"{key} missed {sorted(missing)} (wanted {sorted(wanted)})"
        for slot in missing:  # only what the killed worker held when it died
            assert killed_at - INTERVAL - 1 <= due_of(*key, slot) <= killed_at + 1, (key, slot, killed_at)
        for slot, worker, _ in items:
            if due_of(*key, slot) > killed_at + 1:
                assert worker in survivors
            per_worker[worker] = per_worker.get(worker, 0) + 1
    assert victim.slot not in {s for s, _, _ in runs[(victim.device_id, "snmp")]}  # in flight when killed: lost
    assert victim.slot + 1 in {s for s, _, _ in runs[(victim.device_id, "snmp")]}  # ... and the next one ran elsewhere
    handed = sum(a[1] != b[1] for items in runs.values() for a, b in itertools.pairwise(items) if b[0] == a[0] + 1)
    assert handed >= 10, "consecutive slots of a check should often run on different workers"
    unrated = [(r.device_id, r.started) for r in later if int(r.started) not in rated.get(r.device_id, set())]
    assert len(later) > 30 and not unrated, unrated  # every poll after the first had the previous counters, from any worker
    assert set(per_worker) == {"w1", "w2", "w3"}, per_worker  # every worker took a share
    assert all(per_worker[w] >= 5 for w in survivors), per_worker
