"""How `pytest -n N --dist loadscope` hands the suite's modules to its workers.

Each module runs on one worker (its module-scoped peers start once). xdist's own order is by number of tests, so
the few slow modules (2 or 3 long tests each: real serve and worker processes, Chromium, a Samba DC) came last and
one worker ran them one after another while the others had finished. Here the slowest modules go first, and a
worker takes its next module only when it is down to its last test (xdist gives it one while two remain, so a
worker busy with a slow module held the next slow one while another worker had nothing to do). Modules sharing a
session-scoped peer that is slow to start run on one worker, so it starts once.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from argon2 import PasswordHasher

from server.auth import passwords
from tests.peers.sshd import SshdPeer, start_sshd

# Argon2id at a test's cost inside the test processes (t=1, m=8 MiB, p=1: ~5 ms of CPU a hash against ~190 ms): the
# suite hashes and verifies thousands of passwords and recovery codes (six sign-in-heavy modules took 107 s of CPU at
# the product's cost, 60 s at this one). The same library and code paths: every sign-in still verifies a real Argon2id
# hash. Processes the tests start (serve, worker, the CLI) keep the product's cost; tests/server/test_auth.py checks
# it in one of them.
passwords.hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)

# A new SQLite database is given the schema by copying one this process migrated (the SQLite backup API), not by
# running every Alembic migration again: that was a third of the CPU of the in-process app tests (each test's app
# migrates its own new data dir). The product's migrate() still decides and still runs: only Alembic's upgrade of an
# empty SQLite database is a copy of what that same upgrade produced once. PostgreSQL tests copy a migrated template
# database the same way (PgServer, tests/server/conftest.py). Tests marked `real_migrations` run Alembic itself, as do the
# processes the tests start (serve, worker, the CLI).
_alembic_upgrade = command.upgrade


@functools.cache
def _migrated_sqlite() -> Path:
    """A SQLite database at the newest schema, made once per test process by Alembic itself (as migrate() runs it)."""
    from server.store.db import alembic_config, make_engine

    folder = Path(tempfile.mkdtemp(prefix="pocketnoc-schema-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "schema.db"
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    try:
        config = alembic_config(url)
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            _alembic_upgrade(config, "heads")
    finally:
        engine.dispose()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def _upgrade_from_copy(config: Any, revision: str, *args: Any, **kwargs: Any) -> None:
    """Alembic's upgrade, except that an empty SQLite database going to the newest schema gets a copy of it."""
    conn = config.attributes.get("connection")
    raw = conn.connection.driver_connection if conn is not None and conn.dialect.name == "sqlite" else None
    if args or kwargs or revision != "heads" or not isinstance(raw, sqlite3.Connection) or raw.in_transaction or \
            raw.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        _alembic_upgrade(config, revision, *args, **kwargs)
        return
    with contextlib.closing(sqlite3.connect(_migrated_sqlite())) as source:
        source.backup(raw)


@pytest.fixture(autouse=True)
def _schema_by_copy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("real_migrations") is None:
        monkeypatch.setattr(command, "upgrade", _upgrade_from_copy)


# Seconds a module takes on one worker of `make test` (pytest --durations, 2 cores, measured under load: only the
# order matters). Modules not listed are quick and keep xdist's order (most tests first) after these.
SLOW_MODULES: dict[str, float] = {  # seconds of each module's tests in a whole run (3 workers, 2 cores), junit, 2026-12-07 07:30
    "tests/server/test_scaleout_faults.py": 123,
    "tests/server/test_scaleout_queue.py": 97,
    "tests/server/test_scaleout_sites.py": 64,
    "tests/server/test_directory_browser.py": 53,  # 8 s of tests + the Samba DC's start (~45 s, in the session fixture)
    "tests/server/test_cli.py": 60,
    "tests/server/test_app_browser.py": 34,
    "tests/server/test_app_live.py": 34,
    "tests/server/test_app_oncall_path.py": 32,
    "tests/server/test_security_keyrotation.py": 28,  # issue 12: 07:30 figure x its one-process after/before ratio
    "tests/server/test_security_2fa.py": 27,  # issue 12: 07:30 figure x its one-process after/before ratio
    "tests/server/test_alerts_live.py": 23,
    "tests/server/test_security_throttle.py": 21,  # issue 12: 07:30 figure x its one-process after/before ratio
    "tests/agents/test_corpus.py": 20,
    "tests/server/test_scaleout_failover.py": 19,
    "tests/server/test_discovery.py": 18,
    "tests/server/test_cli_interrupt.py": 18,
    "tests/server/test_actions_pages.py": 18,
    "tests/server/test_security_sessions.py": 17,
    "tests/server/test_actions_targets.py": 16,
    "tests/server/test_notify_delivery.py": 15,
    "tests/server/test_security_schemathesis.py": 15,
    "tests/server/test_notify_push_enrol.py": 15,
    "tests/server/test_directory_ad.py": 14,
    "tests/server/test_security_matrix.py": 14,
    "tests/server/test_actions_ssh.py": 14,
    "tests/server/test_auth_signin.py": 14,  # issue 12: 07:30 figure x its one-process after/before ratio
    "tests/server/test_app_pages.py": 13,
    "tests/server/test_pipeline.py": 13,
    "tests/server/test_discovery_browser.py": 13,
    "tests/server/test_poller.py": 12,
    "tests/server/test_app_oncall.py": 12,
    "tests/server/test_notify_dependencies.py": 12,
    "tests/agents/test_snmp_partial.py": 11,
    "tests/server/test_scaleout_checklocks.py": 10,
    "tests/server/test_pages_render_all.py": 10,
    "tests/server/test_notify_crash.py": 10,  # issue 12: 07:30 figure x its one-process after/before ratio
    "tests/server/test_actions_snmp.py": 9,
    "tests/server/test_security_users.py": 9,
    "tests/server/test_scaleout_store.py": 9,
    "tests/server/test_terminal_browser.py": 9,
}
SLOW = 20.0  # a module this slow keeps its worker busy: it is not given the next slow module meanwhile
# Modules that share a session-scoped peer slow to start: one work unit, so the peer starts on one worker only.
SHARED_PEERS: dict[str, str] = {
    "tests/server/test_directory_ad.py": "samba-dc",
    "tests/server/test_directory_browser.py": "samba-dc",
    # Not a shared peer but a shared trait: real serve and worker clusters that mostly wait out polling intervals
    # (~5 min of wall time, a third of a core). One worker runs them one after another while the others take the
    # CPU-bound rest; spread over all workers they held three of them waiting at once.
    "tests/server/test_scaleout_faults.py": "scaleout-clusters",
    "tests/server/test_scaleout_queue.py": "scaleout-clusters",
    "tests/server/test_scaleout_sites.py": "scaleout-clusters",
}


def module_seconds(scope: str) -> float:
    """The measured cost of a work unit (a module, or a group of modules sharing a peer)."""
    if scope in SHARED_PEERS.values():
        return sum(SLOW_MODULES.get(module, 0.0) for module, group in SHARED_PEERS.items() if group == scope)
    return SLOW_MODULES.get(scope.split("::", 1)[0], 0.0)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it (-p no:xdist) this is not called
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadscope`: slowest modules first, one module at a time per worker (other modes: xdist's own)."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SlowestFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_PEERS.get(module) or str(super()._split_scope(nodeid))

        def _assign_work_unit(self, node: Any, quickest: bool = False) -> None:
            # Ties keep xdist's order (most tests first): the quickest is the last of the least measured.
            pick = min(reversed(self.workqueue), key=module_seconds) if quickest else max(self.workqueue, key=module_seconds)
            self.workqueue.move_to_end(pick, last=False)
            super()._assign_work_unit(node)

        def _reschedule(self, node: Any) -> None:
            # A worker runs its last test only once it is told what follows (or to stop): with one test left it is
            # waiting, and only then does it get another module. If that test is a slow module's, it gets a quick
            # module to go on with, and the slow ones stay for workers that come free meanwhile.
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            left = [scope for scope, unit in self.assigned_work[node].items() for done in unit.values() if not done]
            if len(left) <= 1:
                self._assign_work_unit(node, quickest=bool(left) and module_seconds(left[0]) >= SLOW)

    return SlowestFirst(config, log)


def pytest_deselected(items: list[pytest.Item]) -> None:
    """With QUIET_TESTS_FILE set, the modules holding `quiet` tests that a `-m "not quiet"` run left out are written
    there, one a line: `make test` then runs `-m quiet` on just those, without importing every test module (~10 s)."""
    path = os.environ.get("QUIET_TESTS_FILE")
    modules = sorted({item.nodeid.split("::", 1)[0] for item in items if item.get_closest_marker("quiet") is not None})
    if path and modules:
        part = f"{path}.{os.getpid()}"
        Path(part).write_text("".join(f"{module}\n" for module in modules))
        os.replace(part, path)  # each xdist worker writes the same list


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPeer]:
    """One real OpenSSH sshd per test module (its client keys are made once per process; tests act on per-test
    scratch dirs, so they stay independent)."""
    peer = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield peer
    peer.stop()
