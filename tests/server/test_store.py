"""The store on real SQLite and PostgreSQL: devices, sealed secrets, config sync."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox, SecretsUnavailable
from server.store.db import Engine
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
from server.store.metrics import SeriesCache, write_samples
from tests import sql
from tests.server.conftest import add, spec

COMMUNITY = "c0mmunity-Zq81-secret"
AUTH_KEY = "auth-K3y-Wv02-secret"
PRIV_KEY = "priv-K3y-Hx55-secret"
SSH_PASSWORD = "ssh-pa55-Jd77-secret"
SECRETS = (COMMUNITY, AUTH_KEY, PRIV_KEY, SSH_PASSWORD)


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


def rows_by_name(engine: Engine) -> dict[str, Any]:
    return {r.name: r for r in sql.records(engine, "devices")}


# ---------------------------------------------------------------- devices


def test_create_device_stores_the_row_and_an_unknown_status(engine: Engine, box: SecretBox) -> None:
    (device_id,) = add(engine, box, spec("sw1", tags=["b", "a"], interval=30, kind="switch"))
    with engine.connect() as conn:
        row = load_device(conn, box, device_id)
        (status,) = sql.records(conn, "device_status", "device_id = :d", order="device_id", d=device_id)
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
        sql.insert(conn, "state_events", device_id=parent, ts=1.0, old_state="unknown", new_state="up", reason="")
    with engine.begin() as conn:
        assert delete_device(conn, parent)
        assert not delete_device(conn, parent)
    with engine.connect() as conn:
        for table in ("series", "samples", "state_events"):
            assert sql.scalar(conn, f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608 - a name of the list above
        assert sql.scalars(conn, "SELECT device_id FROM device_status") == [child]
        row = load_device(conn, box, child)
    assert row is not None and row.parent_id is None


# ---------------------------------------------------------------- secrets


def test_secrets_are_sealed_and_never_stored_in_clear(engine: Engine, box: SecretBox, db_url: str) -> None:
    first, second = add(engine, box, secret_spec("sw1"), v3_spec("r1"))
    with engine.connect() as conn:
        raw = {r.id: r for r in sql.records(conn, "devices")}
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
        assert sql.scalar(conn, "SELECT secrets FROM devices WHERE id = :id", id=device_id) is None
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
    assert sql.scalar(engine, "SELECT count(*) FROM samples") == 1


def test_sync_refuses_a_parent_loop(engine: Engine, box: SecretBox) -> None:
    with pytest.raises(DeviceConflict, match="parent loop"), engine.begin() as conn:
        sync_config_devices(conn, [spec("a", parent="b"), spec("b", parent="a")], box, 60)
    with engine.connect() as conn:
        assert count_devices(conn) == 0


def test_sync_seals_config_secrets_too(engine: Engine, box: SecretBox) -> None:
    with engine.begin() as conn:
        sync_config_devices(conn, [secret_spec("cfg")], box, 60)
    with engine.connect() as conn:
        blob = sql.scalar(conn, "SELECT secrets FROM devices")
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
