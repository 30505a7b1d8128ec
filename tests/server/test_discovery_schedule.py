"""Scheduled discovery re-runs with two serve processes on one PostgreSQL database: only the holder of the discovery
lease starts a due re-run, a stale holder's fence claims nothing, and another process takes over when the leader
stops."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from server.cli.discovery import cmd_discover
from server.cli.main import build_parser
from server.config.settings import Settings
from server.services import discovery, discovery_schedule
from server.services.discovery_bodies import DiscoveryRequest
from server.store import discovery as store
from server.store import leases
from tests.peers.sshd import free_port
from tests.server.conftest import AppEnv, make_app_env

app_on = contextmanager(make_app_env)


def _due(env: AppEnv, now: float, holder: str) -> list[int]:
    """One check of the schedule loop, in the app's own event loop (the re-run's sweep runs there)."""
    assert env.client.portal is not None
    return env.client.portal.call(discovery_schedule.run_due, env.svc, now, holder)


def _finished(env: AppEnv, run_id: int) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while (run := discovery.run_view(env.svc, run_id))["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} still running"
        time.sleep(0.05)
    return run


def _schedule(env: AppEnv, run_id: int, at: float) -> None:
    with env.svc.engine.begin() as conn:
        store.update_run(conn, run_id, next_at=at)


@contextmanager
def two_processes(tmp_path: Path, pg_url: str) -> Iterator[tuple[AppEnv, AppEnv]]:
    """Two apps (serve processes) on one database and one secret key, each with its own data dir."""
    with ExitStack() as stack:
        envs = [stack.enter_context(app_on(Settings(data_dir=tmp_path / n, database_url=pg_url, writer_batch_seconds=0.05,
                                                    secret_key_file=tmp_path / "secret.key")))
                for n in ("a", "b")]
        yield envs[0], envs[1]


def test_only_the_lease_holder_starts_a_due_rerun(tmp_path: Path, pg_url: str) -> None:
    closed = free_port()  # nothing listens: the sweep of one loopback address ends at once
    body = DiscoveryRequest.model_validate({"ranges": ["127.0.0.1/32"], "ports": [closed], "icmp": False, "timeout": 0.1,
                                            "snmp": [{"version": "2c", "community": "public", "port": closed}]})
    with two_processes(tmp_path, pg_url) as (a, b):
        first = discovery.start(a.svc, None, None, body)
        with a.svc.engine.begin() as conn:
            store.update_run(conn, first, status="done", finished_at=1000.0)
        _schedule(a, first, 2000.0)

        assert _due(a, 1500.0, "serve-a") == []  # nothing due yet; a now holds the discovery lease
        assert _due(b, 2001.0, "serve-b") == []  # due, but b does not lead: it starts nothing
        second = _due(a, 2001.0, "serve-a")
        assert len(second) == 1 and discovery.run_view(a.svc, second[0])["previous_id"] == first
        assert _due(a, 2002.0, "serve-a") == [] and _due(b, 2002.0, "serve-b") == []  # started once, by one process
        assert _finished(a, second[0])["status"] == "done"

        _schedule(a, second[0], 3000.0)
        with a.svc.engine.begin() as conn:
            fence = leases.acquire(conn, discovery_schedule.LEASE, "serve-a", discovery_schedule.LEASE_SECONDS)
        assert fence is not None
        discovery_schedule.release(a.svc, "serve-a")  # a stops cleanly: b takes over at its next check
        third = _due(b, 3001.0, "serve-b")
        assert len(third) == 1 and discovery.run_view(b.svc, third[0])["previous_id"] == second[0]
        assert _due(a, 3001.0, "serve-a") == []
        assert _finished(b, third[0])["status"] == "done"

        _schedule(b, third[0], 4000.0)  # a process paused past its lease wakes with its old fence: it claims nothing
        assert discovery_schedule._claim(a.svc, "serve-a", fence, third[0], 4001.0) is None
        with a.svc.reader.connect() as conn:
            assert store.due_runs(conn, 4001.0) == [third[0]]
            current = leases.current(conn, discovery_schedule.LEASE)
        assert current is not None and current.holder == "serve-b" and current.fence == fence + 1
        fourth = discovery_schedule.rerun_due(a.svc, third[0], 4001.0)  # cron's `discover due`: no lease, still once
        assert fourth is not None and discovery_schedule.rerun_due(b.svc, third[0], 4001.0) is None


def test_a_due_run_is_claimed_once(tmp_path: Path, pg_url: str) -> None:
    body = DiscoveryRequest.model_validate({"ranges": ["127.0.0.1/32"], "snmp": [{"version": "2c", "community": "public"}]})
    with two_processes(tmp_path, pg_url) as (a, b):
        run = discovery.start(a.svc, None, None, body)
        with a.svc.engine.begin() as conn:
            store.update_run(conn, run, status="done", next_at=100.0)
            assert store.claim_due(conn, run, 99.0) is None  # not due yet
        with a.svc.engine.begin() as one:
            assert store.claim_due(one, run, 101.0) == 100.0
        with b.svc.engine.begin() as two:
            assert store.claim_due(two, run, 101.0) is None


def test_cron_discover_due_starts_a_rerun_once(tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    closed = free_port()
    body = DiscoveryRequest.model_validate({"ranges": ["127.0.0.1/32"], "ports": [closed], "icmp": False, "timeout": 0.1,
                                            "snmp": [{"version": "2c", "community": "public", "port": closed}]})
    with two_processes(tmp_path, pg_url) as (a, _b):
        run = discovery.start(a.svc, None, None, body)
        with a.svc.engine.begin() as conn:
            store.update_run(conn, run, status="done", finished_at=1000.0, next_at=2000.0)

        def cron() -> str:
            args = build_parser().parse_args(["discover", "due", "--data-dir", str(tmp_path / "a")])
            assert cmd_discover(args, a.svc.settings) == 0
            return capsys.readouterr().out

        assert f"run {run + 1}: done" in cron()
        assert cron() == ""  # taken off the schedule: the next cron run starts nothing
        assert _due(a, 2001.0, "serve-a") == []  # nor does the serve process
