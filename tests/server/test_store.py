"""The store on real SQLite and PostgreSQL: devices, sealed secrets, config sync, samples, rollups, retention."""

from __future__ import annotations

import os
import stat
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, delete, func, insert, select

from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox, SecretsUnavailable
from server.store.devices import (
    DeviceConflict,
    count_devices,
    create_device,
    delete_device,
    load_device,
    load_devices,
    sync_config_devices,
    update_device,
)
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
from server.store.schema import device_status, devices, meta, rollups, samples, series, state_events

COMMUNITY = "c0mmunity-Zq81-secret"
AUTH_KEY = "auth-K3y-Wv02-secret"
PRIV_KEY = "priv-K3y-Hx55-secret"
SSH_PASSWORD = "ssh-pa55-Jd77-secret"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY, SSH_PASSWORD)


def spec(name: str, **fields: Any) -> DeviceSpec:
    return DeviceSpec.model_validate({"name": name, "address": "192.0.2.10", **fields})


def secret_spec(name: str = "sw1") -> DeviceSpec:
    return spec(
        name,
        snmp={"version": "2c", "community": COMMUNITY},
        ssh={"user": "mon", "password": SSH_PASSWORD, "host_key": "ssh-ed25519 AAAAC3Nza"},
    )


def v3_spec(name: str = "r1") -> DeviceSpec:
    return spec(
        name,
        snmp={"version": "3", "user": "mon", "auth_protocol": "sha256", "auth_key": AUTH_KEY,
              "priv_protocol": "aes128", "priv_key": PRIV_KEY},
    )


def add(engine: Engine, box: SecretBox, *specs: DeviceSpec, source: str = "api") -> list[int]:
    with engine.begin() as conn:
        return [create_device(conn, s, box, 60, source=source) for s in specs]


def rows_by_name(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.name: r for r in conn.execute(select(devices))}


# ---------------------------------------------------------------- devices


def test_create_device_stores_the_row_and_an_unknown_status(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1", tags=["b", "a"], interval=30, kind="switch"))
    with engine.connect() as conn:
        row = load_device(conn, box, device_id)
        status = conn.execute(select(device_status).where(device_status.c.device_id == device_id)).one()
    assert row is not None
    fields = (row.name, row.address, row.tags, row.interval, row.kind, row.source)
    assert fields == ("sw1", "192.0.2.10", ["a", "b"], 30, "switch", "api")
    assert row.enabled and row.parent_id is None
    assert status.state == "unknown" and status.last_polled is None and status.facts == {}


def test_the_default_interval_applies_when_a_device_sets_none(engine: Engine, box: SecretBox) -> None:
    with engine.begin() as conn:
        device_id = create_device(conn, spec("sw1"), box, 45)
        row = load_device(conn, box, device_id)
    assert row is not None and row.interval == 45


def test_a_taken_name_or_a_missing_parent_is_a_conflict(engine: Engine, box: SecretBox) -> None:
    add(engine, box, spec("sw1"))
    with pytest.raises(DeviceConflict, match="already exists"), engine.begin() as conn:
        create_device(conn, spec("sw1"), box, 60)
    with pytest.raises(DeviceConflict, match="parent 'ghost'"), engine.begin() as conn:
        create_device(conn, spec("sw2", parent="ghost"), box, 60)
    with engine.connect() as conn:
        assert count_devices(conn) == 1


def test_update_device_replaces_the_spec(engine: Engine, box: SecretBox) -> None:
    parent, child = add(engine, box, spec("core"), spec("edge"))
    with engine.begin() as conn:
        update_device(conn, child, spec("edge-renamed", address="host.example.net", parent="core", enabled=False), box, 60)
        row = load_device(conn, box, child)
    assert row is not None
    assert (row.name, row.address, row.parent_id, row.enabled) == ("edge-renamed", "host.example.net", parent, False)


def test_update_refuses_a_name_clash_and_parent_loops(engine: Engine, box: SecretBox) -> None:
    a, b, c = add(engine, box, spec("a"), spec("b"), spec("c"))
    with engine.begin() as conn:
        update_device(conn, b, spec("b", parent="a"), box, 60)
        update_device(conn, c, spec("c", parent="b"), box, 60)
    with pytest.raises(DeviceConflict, match="already exists"), engine.begin() as conn:
        update_device(conn, c, spec("a"), box, 60)
    with pytest.raises(DeviceConflict, match="loop"), engine.begin() as conn:
        update_device(conn, a, spec("a", parent="c"), box, 60)
    with pytest.raises(DeviceConflict, match="loop"), engine.begin() as conn:
        update_device(conn, a, spec("a", parent="b"), box, 60)
    with engine.connect() as conn:
        row = load_device(conn, box, a)
    assert row is not None and row.parent_id is None


def test_delete_device_removes_its_history_and_orphans_its_children(engine: Engine, box: SecretBox) -> None:
    parent, child = add(engine, box, spec("core"), spec("edge", parent="core"))
    cache = SeriesCache()
    with engine.begin() as conn:
        write_samples(conn, cache, [(parent, "cpu_load_pct", "", 1_000, 5.0)])
        conn.execute(insert(state_events).values(device_id=parent, ts=1.0, old_state="unknown", new_state="up", reason=""))
    with engine.begin() as conn:
        assert delete_device(conn, parent)
        assert not delete_device(conn, parent)
    with engine.connect() as conn:
        for table in (series, samples, state_events):
            assert conn.execute(select(func.count()).select_from(table)).scalar() == 0, table.name
        assert conn.execute(select(device_status.c.device_id)).scalars().all() == [child]
        row = load_device(conn, box, child)
    assert row is not None and row.parent_id is None


# ---------------------------------------------------------------- secrets


def test_secrets_are_sealed_and_never_stored_in_clear(engine: Engine, box: SecretBox, db_url: str) -> None:
    first, second = add(engine, box, secret_spec("sw1"), v3_spec("r1"))
    with engine.connect() as conn:
        raw = {r.id: r for r in conn.execute(select(devices.c.id, devices.c.secrets, devices.c.spec))}
        loaded = {r.id: r.spec for r in load_devices(conn, box)}
    for device_id in (first, second):
        blob = bytes(raw[device_id].secrets)
        public = repr(raw[device_id].spec)
        for secret in SECRETS:
            assert secret.encode() not in blob
            assert secret not in public
    snmp, ssh = loaded[first].snmp, loaded[first].ssh
    assert snmp is not None and ssh is not None
    assert (snmp.community, ssh.password, ssh.user) == (COMMUNITY, SSH_PASSWORD, "mon")
    v3 = loaded[second].snmp
    assert v3 is not None and (v3.auth_key, v3.priv_key, v3.user) == (AUTH_KEY, PRIV_KEY, "mon")
    if db_url.startswith("sqlite:///"):
        engine.dispose()
        path = Path(db_url.removeprefix("sqlite:///"))
        on_disk = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert b"mon" in on_disk  # the search below does look at the right bytes
        for secret in SECRETS:
            assert secret.encode() not in on_disk


def test_a_different_key_fails_closed(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, secret_spec())
    add(engine, box, spec("plain"))  # no secrets: readable with any key
    other = SecretBox(Fernet.generate_key())
    with engine.connect() as conn:
        with pytest.raises(SecretsUnavailable):
            load_device(conn, other, device_id)
        with pytest.raises(SecretsUnavailable):
            load_devices(conn, other)


def test_a_device_without_secrets_has_no_secret_blob(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("plain", checks=[{"type": "ping"}]))
    with engine.connect() as conn:
        assert conn.execute(select(devices.c.secrets).where(devices.c.id == device_id)).scalar() is None
        row = load_device(conn, SecretBox(Fernet.generate_key()), device_id)
    assert row is not None and row.spec.checks[0].type == "ping"


def test_secret_key_file_is_created_private_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys" / "secret.key"
    box = SecretBox.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = box.seal({"snmp.community": COMMUNITY, "none": None})
    assert sealed is not None and COMMUNITY.encode() not in sealed
    assert SecretBox.from_file(path).open(sealed) == {"snmp.community": COMMUNITY}
    assert box.seal({"x": None}) is None and box.open(None) == {}
    monkeypatch.setenv("POCKETNOC_SECRET_KEY", Fernet.generate_key().decode())
    with pytest.raises(SecretsUnavailable):
        SecretBox.from_file(path).open(sealed)


def test_a_missing_or_broken_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SecretsUnavailable, match="does not exist"):
        SecretBox.from_file(tmp_path / "absent.key", create=False)
    broken = tmp_path / "broken.key"
    broken.write_text("not a key")
    with pytest.raises(SecretsUnavailable, match="not a valid key"):
        SecretBox.from_file(broken)
    assert not os.path.exists(tmp_path / "absent.key")


# ---------------------------------------------------------------- config sync


def test_sync_creates_updates_and_removes_config_devices_only(engine: Engine, box: SecretBox) -> None:
    (api_id,) = add(engine, box, spec("api-dev"))
    # Listed child first: parents must still be placed before their children.
    first = [
        spec("leaf", parent="mid"), spec("mid", parent="root"), spec("root"), spec("gone"), spec("under-api", parent="api-dev")
    ]
    with engine.begin() as conn:
        assert sync_config_devices(conn, first, box, 60) == {"created": 5, "updated": 0, "removed": 0}
    rows = rows_by_name(engine)
    assert rows["leaf"].parent_id == rows["mid"].id and rows["mid"].parent_id == rows["root"].id
    assert rows["under-api"].parent_id == api_id
    kept_ids = {n: rows[n].id for n in ("root", "mid", "leaf")}
    assert {n: r.source for n, r in rows.items()} == {
        "api-dev": "api", "leaf": "config", "mid": "config", "root": "config", "gone": "config", "under-api": "config"
    }

    second = [spec("root", address="198.51.100.1", tags=["new"]), spec("mid", parent="root"), spec("leaf", parent="root")]
    with engine.begin() as conn:
        # root (address, tags) and leaf (parent) changed; mid did not and is not counted
        assert sync_config_devices(conn, second, box, 60) == {"created": 0, "updated": 2, "removed": 2}
    rows = rows_by_name(engine)
    assert set(rows) == {"api-dev", "root", "mid", "leaf"}
    assert rows["root"].address == "198.51.100.1" and rows["root"].tags == ["new"]
    assert rows["leaf"].parent_id == rows["root"].id
    assert rows["api-dev"].id == api_id and rows["api-dev"].source == "api"
    assert {n: rows[n].id for n in ("root", "mid", "leaf")} == kept_ids


def test_sync_keeps_ids_and_history_of_unchanged_devices(engine: Engine, box: SecretBox) -> None:
    with engine.begin() as conn:
        sync_config_devices(conn, [spec("a"), spec("b")], box, 60)
    before = {n: r.id for n, r in rows_by_name(engine).items()}
    with engine.begin() as conn:
        write_samples(conn, SeriesCache(), [(before["a"], "cpu_load_pct", "", 1, 1.0)])
        assert sync_config_devices(conn, [spec("a"), spec("b")], box, 60) == {"created": 0, "updated": 0, "removed": 0}
    assert {n: r.id for n, r in rows_by_name(engine).items()} == before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(samples)).scalar() == 1


def test_sync_refuses_a_parent_loop(engine: Engine, box: SecretBox) -> None:
    with pytest.raises(DeviceConflict, match="parent loop"), engine.begin() as conn:
        sync_config_devices(conn, [spec("a", parent="b"), spec("b", parent="a")], box, 60)
    with engine.connect() as conn:
        assert count_devices(conn) == 0


def test_sync_seals_config_secrets_too(engine: Engine, box: SecretBox) -> None:
    with engine.begin() as conn:
        sync_config_devices(conn, [secret_spec("cfg")], box, 60)
    with engine.connect() as conn:
        blob = conn.execute(select(devices.c.secrets)).scalar()
        (row,) = load_devices(conn, box)
    assert blob and COMMUNITY.encode() not in bytes(blob)
    assert row.spec.snmp is not None and row.spec.snmp.community == COMMUNITY


def test_sync_counts_only_real_changes(engine: Engine, box: SecretBox) -> None:
    """A restart with the same file logs "0 updated"; a changed secret, default interval or source counts."""
    with engine.begin() as conn:
        sync_config_devices(conn, [secret_spec("cfg"), spec("plain")], box, 60)
    unchanged = {"created": 0, "updated": 0, "removed": 0}
    with engine.begin() as conn:
        assert sync_config_devices(conn, [secret_spec("cfg"), spec("plain")], box, 60) == unchanged
    other = spec("cfg", snmp={"version": "2c", "community": "changed-community"}, ssh=secret_spec().ssh.model_dump())
    with engine.begin() as conn:
        assert sync_config_devices(conn, [other, spec("plain")], box, 60) == {"created": 0, "updated": 1, "removed": 0}
    with engine.begin() as conn:  # the default interval changed: both devices poll at another pace
        assert sync_config_devices(conn, [other, spec("plain")], box, 120) == {"created": 0, "updated": 2, "removed": 0}
    add(engine, box, spec("was-api"))
    with engine.begin() as conn:  # a device the file now claims becomes config-managed: a change
        assert sync_config_devices(conn, [other, spec("plain"), spec("was-api")], box, 120)["updated"] == 1


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
        ids = {(r.metric, r.labels): r.id for r in conn.execute(select(series))}
        points = conn.execute(select(samples.c.series_id, samples.c.ts, samples.c.value).order_by(samples.c.ts)).all()
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
    with engine.connect() as conn:
        stored = conn.execute(
            select(series.c.device_id, series.c.metric, series.c.labels, samples.c.ts, samples.c.value)
            .join(samples, samples.c.series_id == series.c.id)
        ).all()
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
    with engine.connect() as conn:
        rows = conn.execute(
            select(rollups.c.ts, rollups.c.vmin, rollups.c.vmax, rollups.c.vavg, rollups.c.n)
            .where(rollups.c.resolution == resolution)
            .order_by(rollups.c.ts)
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
        conn.execute(delete(meta))  # forget the high-water marks: re-running must not duplicate or change rows
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
        conn.execute(insert(rollups), old_rows)
        assert expire(conn, raw_hours=48, days_5m=30, days_1h=400, now=now) == 4
    with engine.connect() as conn:
        left = sorted(conn.execute(select(samples.c.value)).scalars())
        kept = sorted((r.resolution, int(now - r.ts) // 86400) for r in conn.execute(select(rollups)))
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
        conn.execute(
            insert(rollups),
            [
                {"series_id": sid, "resolution": 300, "ts": now // 300 * 300 - 3 * 86400,
                 "vmin": 1, "vmax": 9, "vavg": 5, "n": 5},
                {"series_id": sid, "resolution": 3600, "ts": now // 3600 * 3600 - 60 * 86400,
                 "vmin": 2, "vmax": 8, "vavg": 4, "n": 60},
            ],
        )
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
