"""The data directory is 0700 and the database, -wal, -shm, key and log files 0600; looser ones are warned about."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from server.config.settings import Settings
from tests.peers import healthz
from tests.server.app_fleet import free_port
from tests.server.conftest import POCKETNOC, make_app_env, run_cli
from tests.server.demo_helpers import RunningDemo


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def private(data: Path) -> dict[str, int]:
    """Modes of the data directory and everything in it that is not 0600 (directories not 0700)."""
    found = {str(data): mode(data)} if mode(data) != 0o700 else {}
    for path in data.rglob("*"):
        want = 0o700 if path.is_dir() else 0o600
        if mode(path) != want and "snmpsim" not in path.name:
            found[str(path)] = mode(path)
    return found


def test_migrate_then_serve_on_a_fresh_data_dir_keeps_every_file_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrated = run_cli("migrate", "--data-dir", data)
    assert migrated.returncode == 0, migrated.stderr
    assert mode(data) == 0o700 and mode(data / "pocketnoc.db") == 0o600
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([str(POCKETNOC), "serve", "--data-dir", str(data), "--port", str(port)],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            if healthz.answers(f"http://127.0.0.1:{port}"):
                break
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        assert (data / "pocketnoc.db-wal").exists() and (data / "pocketnoc.db-shm").exists(), "WAL in use"
        assert (data / "secret.key").exists()
        assert private(data) == {}
    finally:
        server.terminate()
        server.wait(30)
        log.close()
    assert "open to other users" not in (tmp_path / "serve.log").read_text()


def test_the_app_makes_its_database_private_even_under_a_lax_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)  # what create_app meets when embedded or run by tests: chmod-on-create, not the umask
    try:
        settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)
        for env in make_app_env(settings):
            env.user("root", "admin")  # a write: the -wal and -shm files exist now
            assert (settings.data_dir / "pocketnoc.db-wal").exists()
            assert private(settings.data_dir) == {}
    finally:
        os.umask(old)


def test_a_pre_existing_world_readable_database_gives_a_warning_naming_it(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05)
    for _env in make_app_env(settings):
        pass
    database = settings.data_dir / "pocketnoc.db"
    database.chmod(0o644)
    settings.data_dir.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="pocketnoc"):
        for env in make_app_env(settings):
            assert env.client.get("/healthz").status_code == 200, "warned, not refused"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(database) in w and "0644" in w and "chmod 600" in w for w in warnings), warnings
    assert any(f"chmod 700 {settings.data_dir}" in w for w in warnings), warnings
    assert mode(database) == 0o644, "the admin's choice is left alone"


def test_the_demo_keeps_its_data_dir_and_simulator_log_private(tmp_path: Path) -> None:
    demo_run = RunningDemo(tmp_path / "data")
    try:
        data = demo_run.data_dir
        assert mode(data / "demo-sim" / "snmpsim.log") == 0o600
        assert (data / "pocketnoc.db-wal").exists() and mode(data / "secret.key") == 0o600
        assert private(data) == {}
    finally:
        demo_run.stop()
