"""The secrets key rotates: everything re-encrypted, an interrupted rotation finished, refused while pocketnoc runs;
a wrong key fails closed with one clear line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet
from fastapi.testclient import TestClient

from server.auth import totp
from server.config.settings import Settings
from server.keys import rotation as keyrotation
from server.keys.secretbox import SecretBox
from server.store import diagnostics, keylock, sealed
from server.store.db import make_engine
from server.store.devices import load_devices
from server.web.app import create_app
from tests import sql
from tests.server.app_fleet import free_port, stop_process, wait_healthy
from tests.server.conftest import POCKETNOC, AppEnv, assert_clean_error, bearer, clean_env, run_cli, sign_in
from tests.server.security_helpers import (
    TotpClock,
    assert_absent,
    enrol_totp,
    secret_devices,
)


def _prepare(data: Path, clock: TotpClock) -> Settings:
    settings = Settings(data_dir=data, writer_batch_seconds=0.05)
    app = create_app(settings, poll=False)
    with TestClient(app, follow_redirects=False) as client:
        env = AppEnv(app, client, app.state.services)
        token = env.token("root", "admin")
        for device in secret_devices(161, 22):
            assert client.post("/api/v1/devices", json=device, headers=bearer(token)).status_code == 201
        env.user("two", "viewer")
        sign_in(client, "two")
        enrol_totp(client, clock)
    return settings


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir made once per module by _prepare (5 devices with secrets, a user with TOTP and 10 argon2-hashed
    recovery codes: seconds of hashing); each test gets a copy of its own (`_copy`)."""
    data = tmp_path_factory.mktemp("keyrotation") / "data"
    with clean_env() as patch:
        state = TotpClock(now=(time.time() // totp.STEP) * totp.STEP + 15)
        patch.setattr(totp, "clock", lambda: state.now)
        _prepare(data, state)
    return data


def _copy(prepared: Path, tmp_path: Path) -> Settings:
    """This test's own copy of the prepared data dir (files, key and modes as they are)."""
    data = tmp_path / "data"
    shutil.copytree(prepared, data)
    return Settings(data_dir=data, writer_batch_seconds=0.05)


def _specs(settings: Settings) -> list[str]:
    engine = make_engine(settings.db_url)
    try:
        with engine.connect() as conn:
            return [r.spec.model_dump_json() for r in load_devices(conn, SecretBox.from_file(settings.key_file, create=False))]
    finally:
        engine.dispose()


def test_secrets_rotate_reencrypts_everything_and_swaps_the_key(tmp_path: Path, prepared: Path) -> None:
    settings = _copy(prepared, tmp_path)
    before = _specs(settings)
    old_key = settings.key_file.read_bytes()
    result = run_cli("secrets", "rotate", "--data-dir", settings.data_dir)
    assert result.returncode == 0, result.stderr
    found = re.search(r"re-encrypted (\d+) stored secrets", result.stdout)
    assert found and int(found.group(1)) >= 6, result.stdout  # 5 devices, 1 TOTP secret, the key-check canary, ...
    new_key = settings.key_file.read_bytes()
    assert new_key != old_key
    assert oct(settings.key_file.stat().st_mode & 0o777) == "0o600"
    assert not list(settings.data_dir.glob("secret.key.*"))
    assert _specs(settings) == before
    raw = b"".join(p.read_bytes() for p in settings.data_dir.glob("pocketnoc.db*"))
    assert_absent("the rotated database", raw)
    # The old key opens nothing any more: a copy of the old key file is useless with the new database.
    settings.key_file.write_bytes(old_key)
    with pytest.raises(Exception, match="cannot be decrypted"):
        _specs(settings)
    settings.key_file.write_bytes(new_key)


def test_an_interrupted_rotation_is_finished_by_running_it_again(tmp_path: Path, prepared: Path) -> None:
    settings = _copy(prepared, tmp_path)
    before = _specs(settings)
    old = Fernet(settings.key_file.read_bytes().strip())
    new_key = Fernet.generate_key()
    # Crash after the database was re-encrypted but before the key file was swapped.
    (settings.data_dir / "secret.key.new").write_bytes(new_key)
    engine = make_engine(settings.db_url)
    with engine.begin() as conn:
        sealed.reseal(conn, MultiFernet([Fernet(new_key), old]).rotate)
    engine.dispose()
    refused = run_cli("serve", "--data-dir", settings.data_dir, "--port", "1")
    assert_clean_error(refused, "does not match this database")
    result = run_cli("secrets", "rotate", "--data-dir", settings.data_dir)
    assert result.returncode == 0, result.stderr
    assert settings.key_file.read_bytes().strip() == new_key
    assert _specs(settings) == before


def test_a_wrong_or_broken_key_fails_closed_with_one_clear_line(tmp_path: Path, prepared: Path) -> None:
    settings = _copy(prepared, tmp_path)
    good = settings.key_file.read_bytes()
    settings.key_file.write_bytes(Fernet.generate_key())
    assert_clean_error(run_cli("serve", "--data-dir", settings.data_dir, "--port", "1"), "does not match this database")
    assert_clean_error(run_cli("secrets", "rotate", "--data-dir", settings.data_dir), "does not match this database")
    settings.key_file.write_bytes(b"not a key")
    assert_clean_error(run_cli("serve", "--data-dir", settings.data_dir, "--port", "1"), "is not a valid key")
    settings.key_file.write_bytes(good)
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
    env["POCKETNOC_SECRET_KEY"] = "garbage"
    result = subprocess.run(
        [str(POCKETNOC), "serve", "--data-dir", str(settings.data_dir), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert_clean_error(result, "POCKETNOC_SECRET_KEY is not a valid key")
    with pytest.raises(Exception, match="does not match"):
        create = create_app(Settings(data_dir=settings.data_dir, secret_key_file=tmp_path / "other.key"), poll=False)
        with TestClient(create):
            pass


def test_every_sealed_column_is_rotated() -> None:
    from server.store.schema import metadata

    registered = set(sealed.SEALED_COLUMNS)
    public = {("passkeys", "public_key")}  # a COSE public key: nothing to hide
    binary = {(t.name, c.name) for t in metadata.sorted_tables for c in t.columns if c.type.__visit_name__ == "large_binary"}
    assert binary - public <= registered, (
        f"sealed columns missing from sealed.SEALED_COLUMNS: {binary - public - registered}"
    )
    assert {(t.name, c.name) for t, _, c in sealed.sealed_columns()} == registered & binary


def test_a_worker_refuses_a_wrong_or_missing_key_like_serve(tmp_path: Path, pg_url: str) -> None:
    """`pocketnoc worker` checks the key before it starts anything, and never invents a key file."""
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(pg_url)
    try:
        keyrotation.check_key(engine, SecretBox(Fernet.generate_key()))  # the database's canary, sealed with the real key
    finally:
        engine.dispose()
    env = {"POCKETNOC_DATABASE_URL": pg_url}
    key_file = data / "secret.key"
    key_file.write_bytes(Fernet.generate_key())  # some other install's key
    wrong = run_cli("worker", "--data-dir", data, "--name", "w-wrong-key", env=env)
    assert_clean_error(wrong, "does not match this database")
    assert "POCKETNOC_SECRET_KEY or secret_key_file" in wrong.stderr
    key_file.write_bytes(b"not a key")
    assert_clean_error(run_cli("worker", "--data-dir", data, "--name", "w-broken-key", env=env), "is not a valid key")
    key_file.unlink()
    assert_clean_error(run_cli("worker", "--data-dir", data, "--name", "w-no-key", env=env), "does not exist")
    assert not key_file.exists()  # a worker never creates a key of its own
    garbage = run_cli("worker", "--data-dir", data, "--name", "w-env-key", env=env | {"POCKETNOC_SECRET_KEY": "garbage"})
    assert_clean_error(garbage, "POCKETNOC_SECRET_KEY is not a valid key")
    engine = make_engine(pg_url)
    try:
        assert sql.scalar(engine, "SELECT count(*) FROM workers") == 0  # none registered itself
    finally:
        engine.dispose()


# ---------------------------------------------------------------- rotation while pocketnoc runs
@contextmanager
def _running(command: str, data: Path, env: dict[str, str] | None = None, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """`pocketnoc serve|worker` as a process of its own (its log in data/../COMMAND.log) until the block ends."""
    log = (data.parent / f"{command}.log").open("w")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")} | (env or {})
    proc = subprocess.Popen([str(POCKETNOC), command, "--data-dir", str(data), *extra], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, text=True, env=clean)
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


def test_rotate_refuses_while_the_server_runs_and_force_gets_a_clear_503(tmp_path: Path, prepared: Path) -> None:
    settings = _copy(prepared, tmp_path)
    key = settings.key_file.read_bytes()
    token = run_cli("token", "create", "root", "--data-dir", settings.data_dir).stdout.splitlines()[-1]
    engine = make_engine(settings.db_url)
    device_id = sql.scalar(engine, "SELECT min(id) FROM devices")
    engine.dispose()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _running("serve", settings.data_dir, None, "--port", str(port)) as server:
        wait_healthy(url, server)
        assert httpx.get(f"{url}/api/v1/devices/{device_id}", headers=bearer(token)).status_code == 200
        refused = run_cli("secrets", "rotate", "--data-dir", settings.data_dir)
        assert_clean_error(refused, "is using this database")
        assert refused.returncode == 2 and "--force" in refused.stderr
        assert settings.key_file.read_bytes() == key  # nothing changed
        assert httpx.get(f"{url}/api/v1/devices/{device_id}", headers=bearer(token)).status_code == 200
        forced = run_cli("secrets", "rotate", "--force", "--data-dir", settings.data_dir)
        assert forced.returncode == 0, forced.stderr
        assert settings.key_file.read_bytes() != key
        # The server still holds the old key: what needs a secret answers 503 and says what to do.
        answer = httpx.get(f"{url}/api/v1/devices/{device_id}", headers=bearer(token))
        assert answer.status_code == 503, answer.text
        assert answer.json() == {"detail": "secrets key changed; restart pocketnoc"}
        assert httpx.get(f"{url}/healthz").status_code == 200  # what needs no secret still works
    log = (settings.data_dir.parent / "serve.log").read_text()
    assert "secrets key changed; restart pocketnoc" in log
    assert "GET /api/v1/devices" not in "".join(chunk for chunk in log.split("Traceback")[1:])  # no route traceback
    # Restarted with the new key, it reads its secrets again; a rotation with nothing running needs no --force.
    with _running("serve", settings.data_dir, None, "--port", str(port)) as server:
        wait_healthy(url, server)
        assert httpx.get(f"{url}/api/v1/devices/{device_id}", headers=bearer(token)).status_code == 200
    assert run_cli("secrets", "rotate", "--data-dir", settings.data_dir).returncode == 0


def test_rotate_refuses_while_a_worker_uses_the_postgresql_database(tmp_path: Path, pg_url: str) -> None:
    data = tmp_path / "data"
    data.mkdir()
    key_file = data / "secret.key"
    key_file.write_bytes(Fernet.generate_key())
    env = {"POCKETNOC_DATABASE_URL": pg_url}
    engine = make_engine(pg_url)
    try:
        keyrotation.check_key(engine, SecretBox.from_file(key_file, create=False))
        with _running("worker", data, env, "--name", "w-rotate") as worker:
            deadline = time.monotonic() + 60
            holders = 0
            while not holders and time.monotonic() < deadline:  # the worker holds the in-use lock once its key is good
                assert worker.poll() is None, (data.parent / "worker.log").read_text()
                time.sleep(0.2)
                holders = sql.scalar(
                    engine,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :key AND granted"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                    key=keylock.ADVISORY_LOCK,
                )
            assert holders == 1
            refused = run_cli("secrets", "rotate", "--data-dir", data, env=env)
            assert_clean_error(refused, "is using this database")
            assert refused.returncode == 2 and "PostgreSQL advisory lock" in refused.stderr
            assert key_file.read_bytes().strip() != b"" and keyrotation._all_open(
                engine, Fernet(key_file.read_bytes().strip()))
        rotated = run_cli("secrets", "rotate", "--data-dir", data, env=env)  # the worker stopped: the lock is free
        assert rotated.returncode == 0, rotated.stderr
    finally:
        engine.dispose()


def test_a_lost_lock_session_is_taken_again(pg_url: str) -> None:
    """PostgreSQL cut the session holding the in-use lock (a restart, a timeout, a NAT): the holder takes it again."""
    engine = make_engine(pg_url)
    count = ("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
             "WHERE l.locktype = 'advisory' AND l.objid = :key AND l.granted AND d.datname = current_database()")
    try:
        keylock.hold_key(pg_url)
        held = keylock._HELD[pg_url]
        with engine.connect() as conn:
            assert sql.scalar(conn, count, key=keylock.ADVISORY_LOCK) == 1
            pid = diagnostics.backend_pid(held[1])
            held[1].commit()
            sql.scalar(conn, "SELECT pg_terminate_backend(:pid)", pid=pid)
            conn.commit()
            deadline = time.monotonic() + 10
            while sql.scalar(conn, count, key=keylock.ADVISORY_LOCK) != 0:
                assert time.monotonic() < deadline
                conn.commit()
                time.sleep(0.1)
            conn.commit()
        keeper = threading.Thread(target=keylock._keep_holding, args=(pg_url, 0.2), daemon=True)
        keeper.start()
        deadline = time.monotonic() + 20
        while True:
            if sql.scalar(engine, count, key=keylock.ADVISORY_LOCK) == 1:
                break
            assert time.monotonic() < deadline, "the lock was not taken again"
            time.sleep(0.2)
    finally:
        held_now = keylock._HELD.pop(pg_url, None)  # ends the keepers' loops
        if isinstance(held_now, tuple):
            held_now[1].close()
            held_now[0].dispose()
        engine.dispose()
