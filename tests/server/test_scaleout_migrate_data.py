"""`pocketnoc migrate-data`: an SQLite install moves to PostgreSQL with every device, sample, alert and user."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from server.alerts.writer_hook import Alerting
from server.auth import passwords
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.polling.writer import Writer
from server.store import accounts
from server.store.db import Engine, make_engine, migrate
from server.store.devices import create_device, load_devices
from server.store.status import CheckOutcome
from tests import sql
from tests.server.conftest import PASSWORD, assert_clean_error, bearer, make_app_env, run_cli, sign_in

pytestmark = pytest.mark.pg
# What must come over unchanged.
DEVICES = "SELECT id, name, parent_id FROM devices"
SAMPLES = "SELECT series_id, ts, value FROM samples"
ALERTS = "SELECT id, rule, status, title FROM alerts"
TABLES = ("devices", "series", "samples", "alerts", "alert_events", "users", "api_tokens", "audit")


def _build_sqlite_install(path: Path, box: SecretBox, settings: Settings) -> Engine:
    """Devices (one behind a parent with a higher id), polls with samples, a fired alert, users and a token."""
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    spec = {"address": "192.0.2.10", "snmp": {"version": "2c", "community": "s3cret-community"}, "tags": ["site-b"]}
    with engine.begin() as conn:
        ids = [create_device(conn, DeviceSpec.model_validate({"name": f"dev{i}", **spec}), box, 60) for i in range(3)]
        sql.run(conn, "UPDATE devices SET parent_id = :parent WHERE id = :id", parent=ids[2], id=ids[0])  # a parent created later
        passwords.create_user(conn, "alice", "admin", PASSWORD)
        passwords.create_user(conn, "bob", "viewer", PASSWORD)
        found = accounts.get_user_by_name(conn, "alice")
        assert found is not None
        token = accounts.new_token(conn, found[0].id, "ops")
        accounts.write_audit(conn, None, "user.create", "alice", {"via": "test"})
    (path.parent / "token").write_text(token)
    writer = Writer(engine, settings, hooks=[Alerting(threshold=1).hook])
    writer.start()
    now = time.time() - 600
    for step in range(20):  # ten minutes of polls: samples, then an outage that fires an alert
        ok = step < 15
        for device_id in ids:
            writer.submit(
                CheckOutcome(device_id, "snmp", "snmp", now + step * 30, ok, ok, 12.5, None if ok else "no answer",
                             samples=[("cpu_load_pct", "", 10.0 + step), ("if_oper_up", '{"ifIndex":"1"}', 1.0)] if ok else [])
            )  # fmt: skip
    assert writer.flush(30)
    writer.stop()
    return engine


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: int(sql.scalar(conn, f"SELECT count(*) FROM {t}") or 0) for t in TABLES}  # noqa: S608 - our table names


def test_migrate_data_moves_every_device_sample_alert_and_user(tmp_path: Path, pg_url: str) -> None:
    key = Fernet.generate_key()
    (tmp_path / "secret.key").write_bytes(key)
    box = SecretBox(key)
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)
    source = _build_sqlite_install(tmp_path / "old.db", box, settings)
    before = _counts(source)
    with source.connect() as conn:
        old_devices = {r.name: (r.id, r.parent_id) for r in sql.rows(conn, DEVICES)}
        old_samples = sorted(tuple(r) for r in sql.rows(conn, SAMPLES))
        old_alerts = sorted((r.id, r.rule, r.status, r.title) for r in sql.rows(conn, ALERTS))
    source.dispose()
    assert before["samples"] >= 90 and before["alerts"] >= 3 and before["users"] == 2

    result = run_cli("migrate-data", "--from", tmp_path / "old.db", "--data-dir", tmp_path / "data",
                     env={"POCKETNOC_DATABASE_URL": pg_url})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "samples:" in result.stdout and "done:" in result.stdout

    target = make_engine(pg_url)
    try:
        assert _counts(target) == before
        with target.connect() as conn:
            assert {r.name: (r.id, r.parent_id) for r in sql.rows(conn, DEVICES)} == old_devices
            assert sorted(tuple(r) for r in sql.rows(conn, SAMPLES)) == old_samples
            assert sorted((r.id, r.rule, r.status, r.title) for r in sql.rows(conn, ALERTS)) == old_alerts
            rows = load_devices(conn, box)  # secrets still open with the install's key
        assert {r.spec.snmp.community for r in rows if r.spec.snmp} == {"s3cret-community"}
        with target.begin() as conn:  # sequences moved past the copied ids
            new_id = create_device(conn, DeviceSpec.model_validate({"name": "new", "address": "192.0.2.99"}), box, 60)
        assert new_id == max(i for i, _ in old_devices.values()) + 1
    finally:
        target.dispose()

    # The moved install serves: same users, same passwords, same tokens.
    pg_settings = Settings(data_dir=tmp_path / "data", database_url=pg_url, secret_key_file=tmp_path / "secret.key")
    for env in make_app_env(pg_settings):
        token = (tmp_path / "token").read_text()
        assert env.client.get("/api/v1/devices", headers=bearer(token)).status_code == 200
        sign_in(env.client, "bob")

    again = run_cli("migrate-data", "--from", tmp_path / "old.db", "--to", pg_url, "--data-dir", tmp_path / "data")
    assert_clean_error(again, "not empty")
    missing = run_cli("migrate-data", "--from", tmp_path / "nope.db", "--to", pg_url, "--data-dir", tmp_path / "data")
    assert_clean_error(missing, "no database file")
