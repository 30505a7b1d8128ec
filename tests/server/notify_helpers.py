"""Helpers for the notification tests: an app whose worker runs, devices and alerts made through the real store."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from server.auth import passwords
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.runtime import Services
from server.store import accounts
from server.store import alerts as alert_store
from server.store.db import Engine
from server.web.app import create_app
from tests import sql

T = TypeVar("T")
FAST = """
delivery:
  poll_seconds: 0.2
  backoff_seconds: 0.2
  backoff_max_seconds: 1.0
  timeout_seconds: 3
  lease_seconds: 6
  summary_delay_seconds: 0.5
"""


@dataclass
class NotifyEnv:
    """A running app (worker on) with its client and services."""

    client: TestClient
    svc: Services

    @property
    def engine(self) -> Engine:
        return self.svc.engine

    def user(self, name: str, role: str) -> str:
        """Create a user and return a bearer token for it."""
        with self.engine.begin() as conn:
            user_id = passwords.create_user(conn, name, role, "correct horse battery")
            return accounts.new_token(conn, user_id, "test")

    def settle(self, ahead: float = 120.0, passes: int = 3) -> None:
        """Let what the worker would do in the next `ahead` seconds happen now: its clock jumps ahead and it makes
        `passes` passes, woken at once. Then "nothing more was sent" is checked without waiting in real time."""
        worker = self.svc.notify.worker
        assert worker is not None, "the notify worker is not running"
        base = worker.clock
        worker.clock = lambda: base() + ahead
        self.passes(passes)

    def passes(self, passes: int = 3) -> None:
        """The worker makes `passes` passes at its clock's present time, woken at once; sends and probes they
        started finish and are recorded (however slowly the machine runs: nothing depends on real time)."""
        worker = self.svc.notify.worker
        assert worker is not None, "the notify worker is not running"
        deadline = time.monotonic() + 30

        def run(count: int) -> None:
            start = worker.loops
            while worker.loops < start + count:
                assert time.monotonic() < deadline, "the notify worker made no passes"
                worker.kick()
                time.sleep(0.01)

        run(passes)
        while worker._inflight or worker._probes or worker._results:  # started sends and probes finish, are recorded
            assert time.monotonic() < deadline, "a send or probe of the notify worker did not finish"
            if not worker._inflight and not worker._probes:
                run(1)
            else:
                time.sleep(0.01)
        run(1)  # what a finished send or probe released is claimed in a pass of its own


@contextmanager
def notify_app(tmp_path: Path, channels_yaml: str = "", **settings: Any) -> Iterator[NotifyEnv]:
    """An app with the notifications file `channels_yaml` (fast delivery timings added unless given)."""
    text = channels_yaml if "delivery:" in channels_yaml else channels_yaml + FAST
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    app = create_app(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, channels_file=path, **settings), poll=True)
    with TestClient(app, follow_redirects=False) as client:
        yield NotifyEnv(client, app.state.services)


def bearer(token: str) -> dict[str, str]:
    """Authorization header."""
    return {"Authorization": f"Bearer {token}"}


def add_device(engine: Engine, name: str = "core-sw1", tags: list[str] | None = None, parent: int | None = None,
               state: str = "up") -> int:
    """A device row (disabled, so nothing polls it) with a status row."""
    now = time.time()
    spec = DeviceSpec(name=name, address="192.0.2.10", tags=tags or []).model_dump(mode="json", exclude_none=True)
    with engine.begin() as conn:
        device_id = int(sql.insert(conn, "devices", returning="id", name=name, address="192.0.2.10", tags=tags or [],
                                   parent_id=parent, interval=60, enabled=False, spec=spec, source="api", created_at=now,
                                   updated_at=now))
        sql.insert(conn, "device_status", device_id=device_id, state=state, state_since=now, facts={}, tables={},
                   checks={}, metrics={})
    return device_id


def fire(engine: Engine, device_id: int, title: str = "core-sw1 is down", severity: str = "critical",
         rule: str = "device-down", key: str = "") -> int:
    """Open an alert through the store (record_event writes the outbox row in the same transaction)."""
    with engine.begin() as conn:
        alert_store.fire_event_alert(conn, rule, device_id, key, severity, title, time.time(), title)
        return int(sql.one(conn, "SELECT id FROM alerts WHERE device_id = :d AND rule = :r AND labels = :k",
                           d=device_id, r=rule, k=key)[0])


def fire_many(engine: Engine, titles: dict[int, str], rule: str = "device-down") -> None:
    """Open one alert per device in one transaction, as one writer batch of a mass outage does: the notify worker
    sees them all at once, however slowly the machine runs."""
    with engine.begin() as conn:
        for device_id, title in titles.items():
            alert_store.fire_event_alert(conn, rule, device_id, "", "critical", title, time.time(), title)


def resolve(engine: Engine, device_id: int, rule: str = "device-down", key: str = "") -> None:
    """Resolve the open alert of that rule."""
    with engine.begin() as conn:
        alert_store.resolve_event_alert(conn, rule, device_id, key, time.time(), "cleared")


def messages(engine: Engine, **where: Any) -> list[Any]:
    """Message rows, oldest first, filtered by column values."""
    condition = " AND ".join(f"{column} IS NULL" if value is None else f"{column} = :{column}" for column, value in where.items())
    where = {column: value for column, value in where.items() if value is not None}
    return sql.records(engine, "notify_messages", condition, **where)


def receipts(engine: Engine, message_id: int) -> list[Any]:
    """Delivery receipts of a message."""
    return sql.records(engine, "notify_deliveries", "message_id = :m", m=message_id)


def wait_until(check: Callable[[], T], timeout: float = 60, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
