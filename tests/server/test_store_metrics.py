"""The store's metrics on real SQLite and PostgreSQL: samples, series, rollups, retention, history."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

from server.keys.secretbox import SecretBox
from server.store.db import Engine
from server.store.metrics import (
    LABEL_VALUE_CAP,
    SeriesCache,
    expire,
    history,
    labels_key,
    labels_of,
    rollup,
    write_samples,
)
from tests import sql
from tests.server.conftest import add, spec

# ---------------------------------------------------------------- samples, rollups, retention


def test_labels_key_is_canonical_and_capped() -> None:
    assert labels_key({}) == "" and labels_of("") == {}
    key = labels_key({"b": "2", "a": "x" * 500})
    assert key == labels_key({"a": "x" * 500, "b": "2"})
    assert labels_of(key) == {"a": "x" * LABEL_VALUE_CAP, "b": "2"}


def test_write_samples_creates_series_once(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1"))
    if1 = labels_key({"ifIndex": "1"})
    cache = SeriesCache()
    with engine.begin() as conn:
        rows = [(device_id, "if_in_bps", if1, 100, 1.5), (device_id, "cpu_load_pct", "", 100, 9.0)]
        assert write_samples(conn, cache, rows) == 2
    fresh = SeriesCache()  # another writer (or a restart) must find the same series
    with engine.begin() as conn:
        write_samples(conn, fresh, [(device_id, "if_in_bps", if1, 160, 2.5), (device_id, "if_in_bps", if1, 160, 99.0)])
    with engine.connect() as conn:
        ids = {(r.metric, r.labels): r.id for r in sql.rows(conn, "SELECT * FROM series")}
        points = sql.rows(conn, "SELECT series_id, ts, value FROM samples ORDER BY ts")
    assert set(ids) == {("if_in_bps", if1), ("cpu_load_pct", "")}
    by_series = defaultdict(list)
    for sid, ts, value in points:
        by_series[sid].append((ts, value))
    assert by_series[ids[("if_in_bps", if1)]] == [(100, 1.5), (160, 2.5)]  # the duplicate (series, ts) was ignored
    assert by_series[ids[("cpu_load_pct", "")]] == [(100, 9.0)]



def test_devices_with_the_same_series_keep_their_own_ids(engine: Engine, box: SecretBox) -> None:
    a, b = add(engine, box, spec("sw1"), spec("sw2"))
    keys = [("if_in_bps", labels_key({"ifIndex": str(n)})) for n in range(1, 30)] + [("cpu_load_pct", "")]
    cache = SeriesCache()
    with engine.begin() as conn:  # rows in any order, both devices in one batch
        rows = [(d, m, lbl, 100, float(d * 1000 + i)) for i, (m, lbl) in enumerate(keys) for d in (b, a)]
        assert write_samples(conn, cache, rows) == 2 * len(keys)
    assert cache._ids[a].index is cache._ids[b].index  # one key map for both devices, ids of their own
    fresh = SeriesCache()
    with engine.begin() as conn:
        assert write_samples(conn, fresh, [(a, "cpu_load_pct", "", 160, 1.0), (b, "cpu_load_pct", "", 160, 2.0)]) == 2
        assert write_samples(conn, cache, [(b, "new_metric", "", 160, 3.0)]) == 1  # b grows a series, a keeps its map
    assert cache._ids[a].index is not cache._ids[b].index
    stored = sql.rows(
        engine,
        "SELECT series.device_id, series.metric, series.labels, samples.ts, samples.value"
        " FROM series JOIN samples ON samples.series_id = series.id",
    )
    got = {(r.device_id, r.metric, r.labels, r.ts): r.value for r in stored}
    assert len(got) == 2 * len(keys) + 3
    for i, (m, lbl) in enumerate(keys):
        assert got[(a, m, lbl, 100)] == a * 1000 + i and got[(b, m, lbl, 100)] == b * 1000 + i
    assert got[(a, "cpu_load_pct", "", 160)] == 1.0 and got[(b, "cpu_load_pct", "", 160)] == 2.0
    assert got[(b, "new_metric", "", 160)] == 3.0


T0 = 1_700_000_000 // 3600 * 3600  # an hour boundary
Buckets = dict[int, tuple[float, float, float, int]]  # bucket start -> (min, max, avg, count)


def _raw_points() -> list[tuple[int, float]]:
    """Two hours of irregular samples: uneven gaps make bucket counts differ, so a plain mean of means is wrong."""
    points, ts, i = [], T0, 0
    while ts < T0 + 7200:
        points.append((ts, float((i * 37) % 101)))
        ts += 30 if (ts // 900) % 2 == 0 else 75
        i += 1
    return points


def _expected(points: list[tuple[int, float]], size: int) -> Buckets:
    groups: dict[int, list[float]] = defaultdict(list)
    for ts, value in points:
        groups[ts // size * size].append(value)
    return {b: (min(v), max(v), sum(v) / len(v), len(v)) for b, v in groups.items()}


def _rollup_rows(engine: Engine, resolution: int) -> Buckets:
    rows = sql.rows(
        engine, "SELECT ts, vmin, vmax, vavg, n FROM rollups WHERE resolution = :resolution ORDER BY ts", resolution=resolution
    )
    return {int(r.ts): (r.vmin, r.vmax, r.vavg, int(r.n)) for r in rows}


def _assert_rollups(actual: Buckets, expected: Buckets) -> None:
    assert set(actual) == set(expected)
    for bucket, (vmin, vmax, vavg, n) in expected.items():
        got = actual[bucket]
        assert (got[0], got[1], got[3]) == (vmin, vmax, n), bucket
        assert got[2] == pytest.approx(vavg), bucket


def test_rollups_aggregate_known_values_and_are_idempotent(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1"))
    points = _raw_points()
    with engine.begin() as conn:
        write_samples(conn, SeriesCache(), [(device_id, "cpu_load_pct", "", ts, v) for ts, v in points])
    now = T0 + 7200 + 181  # both hours are complete once the late margin has passed
    with engine.begin() as conn:
        done = rollup(conn, now=now)
    expected_5m, expected_1h = _expected(points, 300), _expected(points, 3600)
    assert done == {300: 24, 3600: 2}
    _assert_rollups(_rollup_rows(engine, 300), expected_5m)
    _assert_rollups(_rollup_rows(engine, 3600), expected_1h)

    with engine.begin() as conn:
        assert rollup(conn, now=now) == {300: 0, 3600: 0}
        sql.run(conn, "DELETE FROM meta")  # forget the high-water marks: re-running must not duplicate or change rows
        rollup(conn, now=now)
    _assert_rollups(_rollup_rows(engine, 300), expected_5m)
    _assert_rollups(_rollup_rows(engine, 3600), expected_1h)


def test_rollups_wait_for_late_samples_and_continue_where_they_stopped(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1"))
    cache = SeriesCache()
    with engine.begin() as conn:
        write_samples(conn, cache, [(device_id, "m", "", T0 + s, 1.0) for s in range(0, 600, 60)])
        # 100 s after the second bucket closed: still inside the late margin, so only the first is rolled up.
        assert rollup(conn, now=T0 + 600 + 100) == {300: 1, 3600: 0}
        write_samples(conn, cache, [(device_id, "m", "", T0 + 599, 3.0)])  # a late sample for the open bucket
        assert rollup(conn, now=T0 + 600 + 181) == {300: 1, 3600: 0}
    rows = _rollup_rows(engine, 300)
    assert rows[T0] == (1.0, 1.0, 1.0, 5)
    assert rows[T0 + 300][1:] == (3.0, pytest.approx(8 / 6), 6)


def test_expire_removes_what_is_past_retention(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1"))
    now = float(T0 + 400 * 86400)
    cache = SeriesCache()
    with engine.begin() as conn:
        write_samples(conn, cache, [(device_id, "m", "", int(now - h * 3600), float(h)) for h in (1, 47, 49, 100)])
        sid = cache.resolve(conn, [(device_id, "m", "")])[(device_id, "m", "")]
        old_rows = [
            {"series_id": sid, "resolution": res, "ts": int(now - days * 86400), "vmin": 0, "vmax": 0, "vavg": 0, "n": 1}
            for res, days in ((300, 29), (300, 31), (3600, 399), (3600, 401))
        ]
        for row in old_rows:
            sql.insert(conn, "rollups", **row)
        assert expire(conn, raw_hours=48, days_5m=30, days_1h=400, now=now) == 4
    with engine.connect() as conn:
        left = sorted(sql.scalars(conn, "SELECT value FROM samples"))
        kept = sorted((r.resolution, int(now - r.ts) // 86400) for r in sql.rows(conn, "SELECT * FROM rollups"))
    assert left == [1.0, 47.0]
    assert kept == [(300, 29), (3600, 399)]


def test_history_reads_raw_then_5m_then_1h(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1"))
    now = int(time.time())
    if1, if2 = labels_key({"ifIndex": "1"}), labels_key({"ifIndex": "2"})
    cache = SeriesCache()
    with engine.begin() as conn:
        write_samples(conn, cache, [(device_id, "if_in_bps", lbl, now - s, float(s)) for s in (60, 120) for lbl in (if1, if2)])
        ids = cache.resolve(conn, [(device_id, "if_in_bps", if1), (device_id, "if_in_bps", if2)])
        sid = ids[(device_id, "if_in_bps", if1)]
        sql.insert(conn, "rollups", series_id=sid, resolution=300, ts=now // 300 * 300 - 3 * 86400, vmin=1, vmax=9, vavg=5, n=5)
        sql.insert(conn, "rollups", series_id=sid, resolution=3600, ts=now // 3600 * 3600 - 60 * 86400, vmin=2, vmax=8, vavg=4,
                   n=60)
    with engine.connect() as conn:
        raw = history(conn, device_id, "if_in_bps", now - 3600, now, raw_hours=48)
        one = history(conn, device_id, "if_in_bps", now - 3600, now, raw_hours=48, labels=if1)
        week = history(conn, device_id, "if_in_bps", now - 7 * 86400, now, raw_hours=48)
        year = history(conn, device_id, "if_in_bps", now - 365 * 86400, now, raw_hours=48)
        nothing = history(conn, device_id, "no_such_metric", now - 3600, now, raw_hours=48)
    assert sorted((p["labels"], p["ts"], p["value"]) for p in raw) == sorted(
        (lbl, now - s, float(s)) for s in (60, 120) for lbl in (if1, if2)
    )
    assert [(p["ts"], p["value"]) for p in one] == [(now - 120, 120.0), (now - 60, 60.0)]
    assert [(p["value"], p["min"], p["max"]) for p in week] == [(5, 1, 9)]
    assert [(p["value"], p["min"], p["max"]) for p in year] == [(4, 2, 8)]
    assert nothing == []
