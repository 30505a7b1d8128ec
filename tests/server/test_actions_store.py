"""Run history storage on SQLite and PostgreSQL: runs outlive devices, unfinished runs are closed at start."""

from __future__ import annotations

from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox
from server.store import runs as store
from server.store.db import Engine
from server.store.devices import create_device, delete_device
from tests import sql


def _run_values(device_id: int | None, name: str) -> dict[str, object]:
    return {
        "action_id": "restart-service",
        "title": "Restart a service",
        "kind": "ssh",
        "danger": "medium",
        "device_id": device_id,
        "device_name": name,
        "alert_id": None,
        "user_id": None,
        "username": "alice",
        "reason": "nginx down",
        "params": {"unit": "nginx"},
        "command": "sudo -n systemctl restart nginx",
    }


def _table_names(engine: Engine) -> list[str]:
    """The tables of the database (of its current schema on PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return sql.scalars(engine, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return sql.scalars(
        engine,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
    )


def test_runs_are_stored_listed_and_outlive_their_device(engine: Engine, box: SecretBox) -> None:
    assert "action_runs" in _table_names(engine)
    spec = DeviceSpec.model_validate({"name": "web-01", "address": "192.0.2.20", "kind": "linux"})
    with engine.begin() as conn:
        device = create_device(conn, spec, box, 60)
        run_id = store.create_run(conn, _run_values(device, "web-01"))
        output = [["stdout", "ok ✓ \ufffd <b>\n"], ["stderr", "warn\n"]]
        store.finish_run(conn, run_id, {"status": "succeeded", "exit_code": 0, "output": output, "duration": 1.5})
        store.set_verification(conn, run_id, "fixed", "web-01 is up")
        other = store.create_run(conn, _run_values(device, "web-01"))
    with engine.connect() as conn:
        run = store.get_run(conn, run_id)
        assert run is not None
        assert run["stdout"] == "ok ✓ \ufffd <b>\n" and run["stderr"] == "warn\n" and run["params"] == {"unit": "nginx"}
        assert run["verification"] == "fixed" and run["status"] == "succeeded"
        assert [r["id"] for r in store.list_runs(conn, device_id=device)] == [other, run_id]
        assert [r["id"] for r in store.list_runs(conn, device_id=device, before=other)] == [run_id]
        info = store.device_info(conn, box, device)
        assert info is not None and info.kind == "linux" and info.state == "unknown"
    with engine.begin() as conn:
        assert store.interrupt_unfinished(conn) == 1
        delete_device(conn, device)
    with engine.connect() as conn:
        stale = store.get_run(conn, other)
        assert stale is not None and stale["status"] == "interrupted" and "outcome is unknown" in stale["error"]
        kept = store.get_run(conn, run_id)
        assert kept is not None and kept["device_id"] is None and kept["device_name"] == "web-01"
