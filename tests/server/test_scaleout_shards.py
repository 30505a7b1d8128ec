"""Shards of queue polling: rendezvous hashing moves only what must move; a worker that falls behind sheds; the
Workers page and /metrics show each worker's shard, load and lag as the scheduling leader assigned them."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.polling.shards import BEHIND_LAG, HOLD_SECONDS, Weights, assign
from server.store import workers as store
from server.store.db import conninfo
from server.store.devices import create_device
from tests import sql
from tests.server.conftest import AppEnv, make_app_env, sign_in

DEVICES = list(range(1, 3001))


def test_a_joining_worker_takes_about_its_share_and_only_from_the_others() -> None:
    before = assign(DEVICES, {"a": 1.0, "b": 1.0, "c": 1.0})
    after = assign(DEVICES, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    moved = [d for d in DEVICES if before[d] != after[d]]
    assert all(after[d] == "d" for d in moved)  # nobody else's devices were reshuffled
    assert 0.2 * len(DEVICES) < len(moved) < 0.3 * len(DEVICES)  # about a quarter
    counts = Counter(after.values())
    assert min(counts.values()) > 0.2 * len(DEVICES)


def test_a_dead_workers_devices_are_spread_over_the_others_and_nothing_else_moves() -> None:
    before = assign(DEVICES, {"a": 1.0, "b": 1.0, "c": 1.0})
    after = assign(DEVICES, {"a": 1.0, "b": 1.0})
    moved = [d for d in DEVICES if before[d] != after[d]]
    assert sorted(moved) == sorted(d for d in DEVICES if before[d] == "c")
    taken = Counter(after[d] for d in moved)
    assert abs(taken["a"] - taken["b"]) < 0.2 * len(moved)  # no thundering herd onto one survivor


def test_a_worker_that_falls_behind_sheds_a_third_of_its_devices_to_the_others_and_regains_them() -> None:
    weights = Weights()
    t = 1000.0
    assert weights.update({"a": 0.1, "b": 0.1}, now=t)  # joined
    assert not weights.update({"a": 0.1, "b": BEHIND_LAG + 1}, now=t + 1)  # judged only once its lag covers a minute
    assert weights.update({"a": 0.1, "b": BEHIND_LAG + 1}, now=t + HOLD_SECONDS + 1)
    assert weights.weights == {"a": 1.0, "b": 0.5} and weights.behind["b"]
    before = assign(DEVICES, {"a": 1.0, "b": 1.0})
    after = assign(DEVICES, weights.weights)
    moved = [d for d in DEVICES if before[d] != after[d]]
    assert all(before[d] == "b" and after[d] == "a" for d in moved)  # only from the late one, only to the other
    b_before = sum(1 for d in DEVICES if before[d] == "b")
    assert 0.25 * b_before < len(moved) < 0.42 * b_before  # weight 1/2 of 1: its share goes from 1/2 to 1/3
    # Still late a moment later: no second cut before the new lag is measured.
    assert not weights.update({"a": 0.1, "b": BEHIND_LAG + 1}, now=t + HOLD_SECONDS + 2)
    # Keeping up again: weight comes back step by step.
    assert weights.update({"a": 0.1, "b": 0.2}, now=t + 2 * HOLD_SECONDS + 2)
    assert weights.weights["b"] == pytest.approx(0.625) and not weights.behind["b"]
    # Alone in its pool, a late worker has nobody to shed to.
    alone = Weights()
    alone.update({"x": BEHIND_LAG + 1}, now=t)
    assert not alone.update({"x": BEHIND_LAG + 1}, now=t + HOLD_SECONDS + 1) and alone.weights["x"] == 1.0


@pytest.fixture
def pg_env(pg_url: str, tmp_path: Path) -> Iterator[AppEnv]:
    # The test's worker beats once: long beats and a long silence keep it live however late the leader's first pass is
    # on a loaded machine (with 5 s beats it was fenced after 15 s, before a slow start's first pass, and shown silent).
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, scheduler="queue", worker_heartbeat_seconds=60,
                        worker_silent_seconds=600)  # fmt: skip
    yield from make_app_env(settings, poll=True)  # the queue leader runs: it assigns the shards


@pytest.mark.pg
def test_the_page_and_metrics_show_each_workers_shard_load_and_lag(pg_env: AppEnv, pg_url: str) -> None:
    engine = pg_env.svc.engine
    with engine.begin() as conn:
        for i in range(3):
            create_device(conn, DeviceSpec.model_validate({"name": f"d{i}", "address": "192.0.2.7"}), pg_env.svc.box, 60)
        worker = store.register(conn, "w-busy", None, "host-1", 41, "inst1", 100, stale_after=600)
        store.heartbeat(conn, worker, "inst1", {"checks_per_min": 120.0, "failed_per_min": 0.0, "lag_p50": 0.2,
                                                "lag_p95": 0.9, "in_flight": 25, "checks_total": 900})  # fmt: skip
    # The leader counts a worker live while it holds a connection of its own (a SIGKILLed one has none).
    with psycopg.connect(conninfo(pg_url, store.worker_app_name("inst1"))) as _session:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if sql.scalar(engine, "SELECT devices FROM worker_shards WHERE name = 'w-busy'") == 3:
                break
            time.sleep(0.2)
        pg_env.user("val", "viewer")
        sign_in(pg_env.client, "val")
        page = pg_env.client.get("/workers").text
        metrics = pg_env.client.get("/metrics", headers={"Authorization": f"Bearer {pg_env.token('m', 'viewer')}"}).text
    row = re.search(r'<li class="row wk-\w+">.*?w-busy.*?</li>', page, re.S)
    figures = pg_env.svc.dispatcher.figures() if pg_env.svc.dispatcher else None  # type: ignore[attr-defined]
    assert row and "shard: 3 devices, 3 checks" in row.group(0) and "25 in flight of 100" in row.group(0), figures
    labels = '{worker="w-busy",site="default"}'
    for line in (f"pocketnoc_worker_shard_devices{labels} 3", f"pocketnoc_worker_shard_weight{labels} 1.0",
                 f"pocketnoc_worker_load{labels} 0.25", f"pocketnoc_worker_start_lag_p95_seconds{labels} 0.9",
                 f"pocketnoc_worker_up{labels} 1", f"pocketnoc_worker_checks_per_minute{labels} 120.0"):  # fmt: skip
        assert line in metrics.splitlines(), line
