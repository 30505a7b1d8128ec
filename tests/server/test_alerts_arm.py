"""`arm` through the store: ports never seen up make no alert; ports seen up (now, or in history at upgrade) do."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations

from server.alerts.engine import Flap
from server.alerts.writer_hook import Alerting
from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox
from server.store.db import Engine
from server.store.devices import create_device
from server.store.metrics import labels_key
from server.store.status import CheckOutcome, DeviceStatus
from tests import sql

NO_WAIT = Flap(settle=0)  # a port back up resolves at once (flapping is not what these tests are about)
MIGRATION = Path(__file__).resolve().parents[2] / "server" / "migrations" / "versions" / "0009_arm_seen_ports.py"


def _port(n: int) -> str:
    return labels_key({"ifIndex": str(n), "ifName": f"ge-0/0/{n}"})


def _poll(engine: Engine, alerting: Alerting, device_id: int, ts: float, oper: dict[int, int]) -> None:
    rows = [["if_oper_up", _port(n), float(up)] for n, up in oper.items()]
    rows += [["if_admin_up", _port(n), 1.0] for n in oper]
    status = {device_id: DeviceStatus(state="up", state_since=ts, metrics={"snmp": rows})}
    with engine.begin() as conn:
        alerting.hook(conn, [], [CheckOutcome(device_id, "snmp", "snmp", ts, True, True, 1.0)], status)


def _firing(engine: Engine) -> set[str]:
    return set(sql.scalars(engine, "SELECT labels FROM alerts WHERE rule = :r", r="interface-down"))


def _device(engine: Engine, box: SecretBox) -> int:
    with engine.begin() as conn:
        return create_device(conn, DeviceSpec(name="sw1", address="192.0.2.1"), box, 60)


def test_a_port_never_up_makes_no_alert_and_a_port_seen_up_does(engine: Engine, box: SecretBox) -> None:
    device = _device(engine, box)
    alerting = Alerting(flap=NO_WAIT)
    now = time.time()
    _poll(engine, alerting, device, now, {1: 1, 2: 0})  # port 1 is up; port 2 is unused (admin up, no link)
    _poll(engine, alerting, device, now + 60, {1: 0, 2: 0})  # port 1 goes down
    assert _firing(engine) == {_port(1)}
    alerting = Alerting(flap=NO_WAIT)  # a restart: the memory is in the database
    _poll(engine, alerting, device, now + 120, {1: 1, 2: 0})
    _poll(engine, alerting, device, now + 180, {1: 0, 2: 0})
    episodes = sql.scalars(engine, "SELECT episode FROM alerts WHERE labels = :labels", labels=_port(1))
    assert episodes == [1, 2] and _firing(engine) == {_port(1)}  # port 2 never, across the restart too


def test_the_upgrade_arms_ports_the_history_shows_up(engine: Engine, box: SecretBox) -> None:
    device = _device(engine, box)
    now = time.time()
    with engine.begin() as conn:
        ids = {}
        for n in (1, 2, 3, 4):
            ids[n] = sql.insert(conn, "series", returning="id", device_id=device, metric="if_oper_up", labels=_port(n))
        sql.insert(conn, "samples", series_id=ids[1], ts=int(now) - 60, value=1.0)  # up in raw history
        sql.insert(conn, "samples", series_id=ids[2], ts=int(now) - 60, value=0.0)  # never up
        sql.insert(conn, "rollups", series_id=ids[3], resolution=3600, ts=int(now) - 86400, vmin=0, vmax=1, vavg=0.5,
                   n=60)  # up days ago, only in the rollups
        sql.insert(conn, "alert_states", rule="interface-down", device_id=device, labels=_port(4), status="firing", since=now,
                   changes=[now], flapping=False)
    spec = importlib.util.spec_from_file_location("migration_0009", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for _ in range(2):  # idempotent: a second run adds nothing
        with engine.begin() as conn, Operations.context(MigrationContext.configure(conn)):
            module.upgrade()
    rows = sql.rows(engine, "SELECT labels, status FROM alert_states WHERE device_id = :d", d=device)
    assert {r.labels: r.status for r in rows} == {_port(1): "ok", _port(3): "ok", _port(4): "firing"}
    _poll(engine, Alerting(), device, now + 60, {1: 0, 2: 0, 3: 0})
    assert _firing(engine) == {_port(1), _port(3)}
