"""The phone pages' reads on SQLite and PostgreSQL: list rows, counts, tags, and the live-update cursor."""

from __future__ import annotations

import time

from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox
from server.store import alerts as alert_store
from server.store import dependents, overview
from server.store.db import Engine
from server.store.devices import create_device
from server.store.metrics import labels_key
from server.store.status import Transition
from tests import sql
from tests.server.app_fleet import build_fleet


def _device(engine: Engine, box: SecretBox, name: str, tags: list[str], parent: str | None = None, **status: object) -> int:
    with engine.begin() as conn:
        device_id = create_device(conn, DeviceSpec(name=name, address="192.0.2.1", tags=tags, parent=parent), box, 60)
        if status:
            sql.update(conn, "device_status", "device_id = :d", status, d=device_id)
    return device_id


def test_rows_come_problems_first_then_by_name_with_hostile_facts_read_safely(engine: Engine, box: SecretBox) -> None:
    hostile = {"sys_name": "bad \ud800 surrogate", "hostname": "<b>h</b>", "kind": 7, "sys_contact": "A" * 70_000}
    _device(engine, box, "b-up", ["z"], state="up")
    _device(engine, box, "a-up", ["site-a", "core"], state="up", facts={"sys_name": "a.example"})
    _device(engine, box, "Z-down", [], state="down", facts=hostile, last_error="x" * 50_000)
    _device(engine, box, "c-unreachable", ["site-a"], state="unreachable")
    with engine.connect() as conn:
        rows = overview.device_rows(conn)
        assert [r["name"] for r in rows] == ["Z-down", "c-unreachable", "a-up", "b-up"]
        assert rows[0]["sys_name"] and "surrogate" in rows[0]["sys_name"] and len(rows[0]["last_error"]) == overview.ERROR_CHARS
        assert rows[0]["kind"] is None, "a non-text fact is not shown as text"
        assert rows[2]["sys_name"] == "a.example" and rows[2]["tags"] == ["core", "site-a"]
        assert [r["name"] for r in overview.device_rows(conn, "up", limit=1, offset=1)] == ["b-up"]
        assert overview.state_counts(conn) == {"up": 2, "down": 1, "unreachable": 1}
        assert overview.all_tags(conn) == ["core", "site-a", "z"]


def test_a_device_in_an_outage_is_shown_behind_its_highest_ancestor_in_an_outage(engine: Engine, box: SecretBox) -> None:
    _device(engine, box, "core", [], state="down")
    _device(engine, box, "dist", [], parent="core", state="up")  # up in between: the access switch is still behind core
    access = _device(engine, box, "access", [], parent="dist", state="unreachable")
    _device(engine, box, "edge", [], state="down")  # no parent: behind nothing
    leaf = _device(engine, box, "leaf", [], parent="edge", state="unreachable")
    _device(engine, box, "fine", [], parent="edge", state="up")  # not in an outage: not listed
    with engine.connect() as conn:
        assert dependents.behind_outages(conn) == {access: "core", leaf: "edge"}
        rows = {r["name"]: r["behind"] for r in overview.device_rows(conn)}
        assert rows == {"core": None, "edge": None, "access": "core", "leaf": "edge", "dist": None, "fine": None}
    with engine.begin() as conn:  # the outages end: nothing is behind anything (and no ancestor is read)
        sql.update(conn, "device_status", "state != 'up'", {"state": "up"})
    with engine.connect() as conn:
        assert dependents.behind_outages(conn) == {}


def test_the_live_cursor_finds_new_transitions_and_alert_events(engine: Engine, box: SecretBox) -> None:
    fleet = build_fleet(engine, box, devices=60, alerts=4)
    with engine.connect() as conn:
        cursor = overview.live_cursor(conn)
        assert overview.changes_since(conn, cursor)["devices"] == []
    with engine.begin() as conn:
        assert alert_store.acknowledge(conn, fleet.alerts[1], "pat", "on it")
        t = Transition(fleet.graphed, time.time(), "up", "down", "test")
        sql.insert(conn, "state_events", device_id=t.device_id, ts=t.ts, old_state=t.old, new_state=t.new, reason=t.reason)
    with engine.connect() as conn:
        found = overview.changes_since(conn, cursor)
        assert found["devices"] == [{"id": fleet.graphed, "state": "down"}]
        assert [(a["id"], a["kind"]) for a in found["alerts"]] == [(fleet.alerts[1], "acknowledged")]
        assert found["cursor"] > cursor and not found["more"]
        assert overview.changes_since(conn, found["cursor"]) == {**found, "devices": [], "alerts": []}


def test_graph_points_are_averaged_by_the_database_from_samples_or_rollups(engine: Engine, box: SecretBox) -> None:
    fleet = build_fleet(engine, box, devices=1, alerts=0)  # a day of history, one sample a minute
    now = time.time()
    keys = [("cpu_load_pct", ""), ("if_in_bps", labels_key({"ifIndex": "1", "ifName": "Gi1/0/1"})), ("no_such_metric", "")]
    with engine.connect() as conn:
        day = overview.series_points(conn, fleet.graphed, keys, now - 86400, now, 48, 160)
        week = overview.series_points(conn, fleet.graphed, keys, now - 7 * 86400, now, 48, 160)
    for found, points in ((day, range(140, 162)), (week, range(23, 27))):  # a day of data in 9-minute or 63-minute buckets
        line, low, high = found[keys[0]]
        assert len(line) in points, len(line)
        assert low is not None and high is not None and all(low <= v <= high for _, v in line)
        assert [t for t, _ in line] == sorted(t for t, _ in line)
        assert found[keys[1]][0], "interface traffic too"
        assert found[keys[2]] == ([], None, None)
    averaged_top = max(v for _, v in day[keys[0]][0])
    assert day[keys[0]][2] is not None and day[keys[0]][2] > averaged_top, "the true maximum, not the top of the averages"
