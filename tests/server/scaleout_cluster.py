"""A scaled-out install for tests: serve and worker processes on one PostgreSQL database, devices on snmpsim.

Every process is a real `pocketnoc` subprocess with the same config file; tests kill them with
SIGKILL or stop them with SIGTERM and read the outcome from the database (run log, alerts).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.fernet import Fernet

from server.polling.dispatch_queue import slot_of
from server.polling.schedule import phase_of
from server.store.db import Engine, make_engine
from tests.peers import healthz
from tests.server.conftest import POCKETNOC
from tests.sql import rows as sql_rows
from tests.sql import scalar as sql_scalar

INTERVAL = 5
TEST_SETTINGS = {
    "scheduler": "queue",
    "worker_heartbeat_seconds": 1,
    "worker_silent_seconds": 4,
    "lease_seconds": 3,
    "writer_batch_seconds": 0.1,
    "backoff_max_seconds": 0,  # a dead device is polled every interval: every slot must show in the run log
    "log_level": "INFO",
}


def free_tcp_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def device(
    name: str, port: int, community: str = "sw", tags: list[str] | None = None, timeout: float = 2.0, retries: int = 0
) -> dict[str, Any]:
    """An SNMP device entry polled every INTERVAL seconds."""
    return {
        "name": name,
        "address": "127.0.0.1",
        "interval": INTERVAL,
        "tags": tags or [],
        "snmp": {"version": "2c", "port": port, "community": community, "timeout": timeout, "retries": retries},
    }


@dataclass
class Cluster:
    """Processes of one install; `procs` by name."""

    root: Path
    url: str
    devices: list[dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _engine: Engine | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.root / "secret.key"
        key.write_bytes(Fernet.generate_key())
        settings = {**TEST_SETTINGS, "database_url": self.url, "secret_key_file": str(key), **self.extra}
        self.config.write_text(yaml.safe_dump({"settings": settings, "devices": self.devices}))

    @property
    def config(self) -> Path:
        """The config file every process reads."""
        return self.root / "pocketnoc.yaml"

    @property
    def engine(self) -> Engine:
        """An engine on the cluster's database, for the test's own queries."""
        if self._engine is None:
            self._engine = make_engine(self.url)
        return self._engine

    def _spawn(self, name: str, *args: str, env_extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")} | (env_extra or {})
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(
            [str(POCKETNOC), *args, "--config", str(self.config), "--data-dir", str(self.root / "data")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def serve(self, name: str = "serve", wait: bool = True) -> int:
        """Start a serve process; returns its port (waits for /healthz)."""
        port = free_tcp_port()
        self.ports[name] = port
        self._spawn(name, "serve", "--port", str(port))
        if wait:
            self.wait_up(name)
        return port

    def worker(self, name: str, site: str | None = None, wait: bool = True, database_url: str | None = None) -> None:
        """Start a worker (on another URL of the database, e.g. through a proxy); waits until it registered."""
        args = ["worker", "--name", name] + (["--site", site] if site else [])
        self._spawn(name, *args, env_extra={"POCKETNOC_DATABASE_URL": database_url} if database_url else None)
        if wait:
            self.wait_up(name)

    def wait_up(self, *names: str) -> None:
        """Wait until each named process is up: a serve process answers /healthz, a worker registered.

        Processes started with wait=False start side by side (each start imports a lot: ~1 s of CPU, several on a
        busy machine), and a worker needs no serve process to register."""
        for name in names:
            if name in self.ports:
                self.wait_for(lambda n=name: self._healthy(n), 60, f"{name} answers /healthz", name)
            else:
                self.wait_for(
                    lambda n=name: self.scalar("SELECT count(*) FROM workers WHERE name = :n AND status = 'running'", n=n),
                    60,
                    f"worker {name} registered",
                    name,
                )

    def _healthy(self, name: str) -> bool:
        return healthz.answers(f"http://127.0.0.1:{self.ports[name]}")

    def check_alive(self, name: str) -> None:
        """Fail with the log when a process died by itself."""
        code = self.procs[name].poll()
        if code is not None:
            raise AssertionError(f"{name} exited with {code}:\n{self.log(name)}")

    def log(self, name: str) -> str:
        """The tail of a process's output."""
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send a signal and reap the process."""
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=60)

    def stop(self) -> None:
        """SIGKILL everything still running, and close the engine: the end of a test, when nothing is judged any more
        (a clean stop waits for the checks in flight, 2-5 s a worker; tests that need one send SIGTERM themselves)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.procs.clear()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def rows(self, query: str, **params: Any) -> list[Any]:
        """Rows of a query on the cluster's database."""
        return sql_rows(self.engine, query, **params)

    def scalar(self, query: str, **params: Any) -> Any:
        """One value of a query."""
        return sql_scalar(self.engine, query, **params)

    def wait_for(self, probe: Any, timeout: float, what: str, *alive: str) -> Any:
        """Poll `probe()` until it is truthy; fail after `timeout` seconds with what was awaited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in alive:
                self.check_alive(name)
            value = probe()
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for: {what}\n" + "\n".join(f"--- {n}\n{self.log(n)}" for n in self.procs))

    def wait_slots(self, count: int, *alive: str, check: str = "snmp") -> None:
        """Wait until every device's check has `count` more slots recorded in check_runs: slots due after now, as
        many as a sleep of `count` intervals stood for, but over as soon as they are there (and longer on a slow
        machine, so the test never judges a window with less in it). After `count` + 3 intervals it returns anyway:
        the test's own assertions then say which slots are missing."""
        now = time.time()
        current = {
            int(r.id): slot_of(now, phase_of(int(r.id), check, INTERVAL), INTERVAL) for r in self.rows("SELECT id FROM devices")
        }
        deadline = time.monotonic() + (count + 3) * INTERVAL
        while time.monotonic() < deadline:
            for name in alive:
                self.check_alive(name)
            recorded = self.runs()
            if all(
                sum(slot > after for slot, _, _ in recorded.get((device_id, check), [])) >= count
                for device_id, after in current.items()
            ):
                return
            time.sleep(0.2)

    def runs(self) -> dict[tuple[int, str], list[tuple[int, str, bool]]]:
        """(device, check) -> [(slot, worker, ok)] of the queued runs, in slot order."""
        out: dict[tuple[int, str], list[tuple[int, str, bool]]] = {}
        for r in self.rows("SELECT device_id, check_name, slot, worker, ok FROM check_runs WHERE slot IS NOT NULL ORDER BY slot"):
            out.setdefault((r.device_id, r.check_name), []).append((int(r.slot), r.worker, bool(r.ok)))
        return out


@contextmanager
def cluster(root: Path, url: str, devices: list[dict[str, Any]], **extra: Any) -> Iterator[Cluster]:
    """A Cluster whose processes are stopped at the end."""
    c = Cluster(root, url, devices, extra)
    try:
        yield c
    finally:
        c.stop()


def expected_slots(device_id: int, check: str, since: float, until: float) -> set[int]:
    """Slots of one check whose due time falls in [since, until] (the scheduler's own arithmetic)."""
    offset = phase_of(device_id, check, INTERVAL)
    return set(range(slot_of(since, offset, INTERVAL) + 1, slot_of(until, offset, INTERVAL) + 1))


def due_of(device_id: int, check: str, slot: int) -> float:
    """When a slot of a check is due."""
    return phase_of(device_id, check, INTERVAL) + slot * INTERVAL
