"""A PostgreSQL dump holds no secret in the clear: what `pg_dump` of a pocketnoc database reveals without the key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.config.settings import Settings
from server.web.app import create_app
from tests.server.conftest import AppEnv, bearer
from tests.server.security_helpers import assert_absent, closed_tcp_port, secret_devices


@pytest.mark.skipif(shutil.which("pg_dump") is None, reason="pg_dump is not installed")
def test_a_pg_dump_reveals_no_secret(tmp_path: Path, pg_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=pg_url)
    app = create_app(settings)
    with TestClient(app, follow_redirects=False) as client:
        env = AppEnv(app, client, app.state.services)
        token = env.token("root", "admin")
        for device in secret_devices(closed_tcp_port(), closed_tcp_port()):
            created = client.post("/api/v1/devices", json=device, headers=bearer(token))
            assert created.status_code == 201, created.text
        channel = client.post(
            "/api/v1/channels",
            json={"name": "hook", "url": "json://127.0.0.1:9/hook-S3CRET-path"},
            headers=bearer(token),
        )
        assert channel.status_code == 201, channel.text
    dump = subprocess.run(["pg_dump", "--no-owner", pg_url], capture_output=True, check=True, timeout=120).stdout
    assert b"CREATE TABLE public.devices" in dump and b"v2c" in dump  # the dump really holds the inventory
    assert_absent("the PostgreSQL dump", dump)
    assert b"hook-S3CRET-path" not in dump
