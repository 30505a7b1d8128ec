"""A full disk degrades, never breaks: the data directory on a small tmpfs made here, filled up, then freed again."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from server.auth.passwords import create_user
from server.config.loader import load_config
from server.config.settings import Settings
from server.store import accounts
from server.store.space import RESERVE_NAME
from server.web.app import create_app
from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.snmpd import SnmpdPeer, start_snmpd
from tests.server.conftest import PASSWORD, sign_in

SIZE_MB = 40
RESERVE_MB = 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB file system of its own (tmpfs with size=), unmounted afterwards."""
    mount = tmp_path / "data"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited file system needs root")
    subprocess.run(["/usr/bin/mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["/usr/bin/umount", "-l", str(mount)], check=False)


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    peer = start_snmpd(tmp_path)
    yield peer
    peer.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


def _fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left."""
    filler = directory / "filler.bin"
    _fill_file(filler)
    return filler


def _fill_file(filler: Path) -> None:
    with filler.open("ab", buffering=0) as out:
        for chunk in (1 << 20, 4096, 512):
            block = b"\0" * chunk
            while True:
                try:
                    out.write(block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


def _poll(client: TestClient, app: Any) -> None:
    svc = app.state.services

    async def run() -> None:
        await asyncio.gather(*(svc.dispatcher.run_now(i) for i in sorted({j.device_id for j in svc.dispatcher.jobs.values()})))

    assert client.portal is not None
    client.portal.call(run)
    assert svc.writer.flush(30)


def _stored(app: Any) -> set[tuple[int, str, str, int]]:
    """Every stored sample's key: device, metric, labels, second."""
    with app.state.services.reader.connect() as conn:
        rows = sql.rows(conn, "SELECT series.device_id, series.metric, series.labels, samples.ts FROM samples"
                              " JOIN series ON series.id = samples.series_id")
        return {(int(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows}


def test_a_full_disk_keeps_pages_api_and_alerts_working_and_writes_everything_later(
    tmp_path: Path, small_disk: Path, snmpd: SnmpdPeer, receiver: Receiver
) -> None:
    conf = tmp_path / "pocketnoc.yaml"
    conf.write_text(
        "settings: {down_after_failures: 1, snmp_timeout: 0.5, snmp_retries: 0}\ndevices:\n"
        "  - {name: core-sw, address: 127.0.0.1, interval: 3600,\n"
        f"     snmp: {{version: 2c, port: {snmpd.port}, community: public}}}}\n"
    )
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"channels:\n  - {{name: hook, url: \"json://127.0.0.1:{receiver.port}/hook\"}}\n"
                        "delivery: {poll_seconds: 0.2}\n")
    config = load_config(conf)
    app = create_app(Settings(data_dir=small_disk, writer_batch_seconds=0.05, channels_file=channels,
                              storage_reserve_mb=RESERVE_MB, **config.settings), config)
    with TestClient(app, follow_redirects=False) as client:
        svc = app.state.services
        assert (small_disk / RESERVE_NAME).stat().st_size == RESERVE_MB << 20
        with svc.engine.begin() as conn:
            token = accounts.new_token(conn, create_user(conn, "ops", "operator", PASSWORD), "t")
        bearer = {"Authorization": f"Bearer {token}"}
        sign_in(client, "ops")
        _poll(client, app)
        stored = _stored(app)
        assert stored
        with svc.engine.begin() as conn:  # a minute has passed: the next request touches its session and token
            sql.run(conn, "UPDATE sessions SET last_seen = last_seen - 120")
            sql.run(conn, "UPDATE api_tokens SET last_used = :t", t=time.time() - 120)
        filler = _fill(small_disk)

        # Full: pages and the API answer, read-only; /healthz says so; polling goes on in memory.
        assert client.get("/api/v1/devices", headers=bearer).status_code == 200
        _poll(client, app)
        _poll(client, app)
        overview = client.get("/")
        assert overview.status_code == 200, overview.text[:500]
        assert "storage full — results are not being saved" in overview.text
        health = client.get("/healthz").json()
        assert health["status"] == "degraded" and health["storage"]["state"] == "full", health
        assert "storage full — results are not being saved" in health["storage"]["message"]
        assert health["storage"]["free_bytes"] is not None and health["writer"]["held_samples"] > 0
        assert health["storage"]["errors"] >= 1 and "full" in health["storage"]["last_error"]
        held = {(d, m, lbl, ts) for d, m, lbl, ts, _v in svc.writer.held}
        assert len(held) > 0 and not held <= stored
        assert client.get("/api/v1/alerts", headers=bearer).status_code == 200
        assert client.get(f"/devices/{client.get('/api/v1/devices', headers=bearer).json()['items'][0]['id']}").status_code == 200

        # A state change still notifies.
        snmpd.stop()
        _poll(client, app)
        got = receiver.wait_for(1, timeout=20)
        assert "core-sw" in got[0].json["title"]
        assert client.get("/api/v1/devices", headers=bearer).json()["items"][0]["state"] == "unreachable"
        assert _stored(app) == stored  # nothing stored is lost, nothing new written while full
        client.cookies.clear()
        sign_in(client, "ops")  # signing in works in the room the released reserve made
        assert client.get("/").status_code == 200

        # Even that room used up: a change that cannot be saved says so (503), reading still works.
        second = small_disk / "filler2.bin"
        second.write_bytes(b"")
        _fill_file(second)
        alert_id = client.get("/api/v1/alerts", headers=bearer).json()["items"][0]["id"]
        refused = client.post(f"/api/v1/alerts/{alert_id}/ack", json={"note": "on it"}, headers=bearer)
        assert refused.status_code == 503 and "storage full" in refused.json()["detail"], refused.text
        assert client.get("/api/v1/devices", headers=bearer).status_code == 200
        assert client.get("/").status_code == 200
        second.unlink()

        # Room again: what was held is written, the reserve is back, /healthz is ok.
        filler.unlink()
        deadline = time.monotonic() + 20
        while client.get("/healthz").json()["storage"]["state"] != "ok":
            assert time.monotonic() < deadline, client.get("/healthz").json()
            time.sleep(0.1)
        assert _stored(app) == stored | held  # everything held in memory is written
        assert client.get("/healthz").json()["status"] == "ok"
        assert (small_disk / RESERVE_NAME).exists()
        with svc.reader.connect() as conn:
            assert sql.scalar(conn, "PRAGMA integrity_check") == "ok"
            assert sql.one(conn, "SELECT last_used FROM api_tokens")[0] > time.time() - 60  # the deferred touch
