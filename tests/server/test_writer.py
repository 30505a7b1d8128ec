"""The writer end to end on real SQLite and PostgreSQL: status, transitions, samples, maintenance, bad input."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.polling.writer import Writer
from server.store import accounts
from server.store.db import Connection, Engine
from server.store.devices import create_device, delete_device
from server.store.diagnostics import statements
from server.store.metrics import labels_key
from server.store.status import CheckOutcome, Transition
from tests import sql

IF1 = labels_key({"ifIndex": "1", "ifName": "eth0"})


@pytest.fixture
def writer(engine: Engine, settings: Settings) -> Iterator[Writer]:
    w = Writer(engine, settings)
    w.start()
    yield w
    w.stop()


def add_devices(engine: Engine, box: SecretBox, *names: str, enabled: bool = True) -> list[int]:
    with engine.begin() as conn:
        return [
            create_device(conn, DeviceSpec(name=n, address="192.0.2.1", enabled=enabled), box, 60) for n in names
        ]


def outcome(device_id: int, check: str = "snmp", ok: bool = True, answered: bool = True, ts: float | None = None,
            **extra: Any) -> CheckOutcome:
    kind = extra.pop("kind", check)
    return CheckOutcome(device_id, check, kind, time.time() if ts is None else ts, ok, answered, 12.345, **extra)


def commit(writer: Writer, *outcomes: CheckOutcome) -> None:
    for o in outcomes:
        writer.submit(o)
    assert writer.flush(60), "the writer did not commit within 60 s"


def status_of(engine: Engine, device_id: int) -> Any:
    (status,) = sql.records(engine, "device_status", "device_id = :d", order="device_id", d=device_id)
    return status


def events_of(engine: Engine, device_id: int) -> list[tuple[str, str]]:
    rows = sql.rows(engine, "SELECT old_state, new_state FROM state_events WHERE device_id = :d ORDER BY id", d=device_id)
    return [(r.old_state, r.new_state) for r in rows]


def test_an_ok_poll_stores_status_facts_tables_and_samples(engine: Engine, box: SecretBox, writer: Writer) -> None:
    (device_id,) = add_devices(engine, box, "sw1")
    ts = 1_800_000_000.75
    interfaces = [{"index": 1, "name": "eth0", "oper": "up", "admin": "up", "speed_bps": 1_000_000_000}]
    commit(
        writer,
        outcome(
            device_id,
            ts=ts,
            facts={"sys_name": "sw1.example", "sys_descr": "Linux", "uptime_seconds": 1234},
            tables={"interfaces": interfaces},
            samples=[("if_in_bps", IF1, 8000.0), ("cpu_load_pct", "", 7.0)],
        ),
    )
    st = status_of(engine, device_id)
    assert (st.state, st.state_since, st.last_polled, st.last_ok, st.last_error, st.failures) == ("up", ts, ts, ts, None, 0)
    assert st.poll_ms == 12.3
    assert st.facts == {"sys_name": "sw1.example", "sys_descr": "Linux", "uptime_seconds": 1234}
    assert st.tables == {"interfaces": interfaces}
    assert st.checks["snmp"] == {
        "kind": "snmp", "ok": True, "answered": True, "fails": 0, "error": None, "ts": ts, "ms": 12.3, "since": ts
    }
    assert st.metrics == {"snmp": [["if_in_bps", IF1, 8000.0], ["cpu_load_pct", "", 7.0]]}
    assert events_of(engine, device_id) == [("unknown", "up")]
    stored = sql.rows(
        engine,
        "SELECT series.metric, series.labels, samples.ts, samples.value FROM series "
        "JOIN samples ON samples.series_id = series.id WHERE series.device_id = :d ORDER BY series.metric",
        d=device_id,
    )
    assert [tuple(r) for r in stored] == [("cpu_load_pct", "", int(ts), 7.0), ("if_in_bps", IF1, int(ts), 8000.0)]
    assert writer.rows == 2 and writer.errors == 0


def test_facts_of_network_checks_stay_with_their_check(engine: Engine, box: SecretBox, writer: Writer) -> None:
    (device_id,) = add_devices(engine, box, "web")
    commit(writer, outcome(device_id, "snmp", facts={"sys_name": "web"}))
    commit(writer, outcome(device_id, "homepage", kind="http", facts={"http_status": 200, "tls_days_left": None}))
    st = status_of(engine, device_id)
    assert st.facts == {"sys_name": "web"}
    assert st.checks["homepage"]["facts"] == {"http_status": 200}


def test_soft_failure_then_hard_failure_then_recovery(engine: Engine, box: SecretBox, writer: Writer) -> None:
    (device_id,) = add_devices(engine, box, "sw1")
    t = 1_800_000_000.0
    commit(writer, outcome(device_id, ts=t, facts={"sys_name": "sw1"}, samples=[("cpu_load_pct", "", 5.0)]))
    commit(writer, outcome(device_id, ts=t + 60, ok=False, answered=False, error="no answer"))
    st = status_of(engine, device_id)
    assert st.state == "up", "one lost poll must not change the state"
    assert (st.checks["snmp"]["fails"], st.failures, st.last_error, st.last_ok) == (1, 1, "snmp: no answer", t)
    assert st.metrics == {"snmp": [["cpu_load_pct", "", 5.0]]}, "the last good metrics stay"
    assert st.facts == {"sys_name": "sw1"}

    commit(writer, outcome(device_id, ts=t + 120, ok=False, answered=False, error="no answer"))
    st = status_of(engine, device_id)
    assert (st.state, st.state_since, st.checks["snmp"]["fails"]) == ("unreachable", t + 120, 2)
    assert st.checks["snmp"]["since"] == t + 60, "since = when the check started failing"

    commit(writer, outcome(device_id, ts=t + 180))
    st = status_of(engine, device_id)
    assert (st.state, st.failures, st.last_error, st.last_ok) == ("up", 0, None, t + 180)
    assert events_of(engine, device_id) == [("unknown", "up"), ("up", "unreachable"), ("unreachable", "up")]
    reasons = sql.scalars(engine, "SELECT reason FROM state_events ORDER BY id")
    assert reasons[1] == "snmp: no answer"


def test_several_checks_give_degraded_and_down(engine: Engine, box: SecretBox, writer: Writer) -> None:
    (device_id,) = add_devices(engine, box, "srv")
    commit(writer, outcome(device_id, "snmp"), outcome(device_id, "ping", kind="ping"))
    for _ in range(2):
        commit(writer, outcome(device_id, "snmp", ok=False, answered=True, error="authentication failure"))
    assert status_of(engine, device_id).state == "degraded"
    for _ in range(2):
        commit(writer, outcome(device_id, "ping", kind="ping", ok=False, answered=False, error="100% loss"))
    st = status_of(engine, device_id)
    assert st.state == "down", "the SNMP agent answered, so the device is down rather than unreachable"
    assert st.last_error == "ping: 100% loss; snmp: authentication failure"
    assert events_of(engine, device_id) == [("unknown", "up"), ("up", "degraded"), ("degraded", "down")]


def test_a_disabled_device_stays_unknown(engine: Engine, box: SecretBox, writer: Writer) -> None:
    (device_id,) = add_devices(engine, box, "off", enabled=False)
    commit(writer, outcome(device_id))
    assert status_of(engine, device_id).state == "unknown"
    assert events_of(engine, device_id) == []


def test_outcomes_of_a_deleted_device_are_dropped(engine: Engine, box: SecretBox, writer: Writer) -> None:
    gone, kept = add_devices(engine, box, "gone", "kept")
    with engine.begin() as conn:
        delete_device(conn, gone)
    writer.forget_device(gone)
    commit(writer, outcome(gone, samples=[("m", "", 1.0)]), outcome(kept, samples=[("m", "", 2.0)]))
    assert writer.errors == 0
    assert status_of(engine, kept).state == "up"
    assert sql.scalars(engine, "SELECT device_id FROM series") == [kept]


def test_hooks_run_in_the_transaction_and_listeners_after_it(engine: Engine, box: SecretBox, settings: Settings) -> None:
    (device_id,) = add_devices(engine, box, "sw1")
    seen: list[list[Transition]] = []

    def hook(conn: Connection, transitions: list[Transition], outcomes: list[CheckOutcome], *_status: Any) -> None:
        for t in transitions:
            sql.insert(conn, "meta", key=f"hook-{t.device_id}-{t.new}", value=str(len(outcomes)))

    w = Writer(engine, settings, hooks=[hook])
    w.listeners.append(lambda transitions, _batch: seen.append(transitions))
    w.listeners.append(lambda _t, _b: 1 / 0)  # a broken listener must not stop the writer
    w.start()
    try:
        commit(w, outcome(device_id))
        commit(w, outcome(device_id, ok=False, answered=True, error="x"))
    finally:
        w.stop()
    assert sql.scalar(engine, "SELECT value FROM meta WHERE key = :k", k=f"hook-{device_id}-up") == "1"
    assert [[(t.old, t.new) for t in batch] for batch in seen] == [[("unknown", "up")], []]
    assert w.errors == 0


def test_stop_commits_what_is_queued(engine: Engine, box: SecretBox, settings: Settings) -> None:
    ids = add_devices(engine, box, *(f"d{i}" for i in range(20)))
    w = Writer(engine, settings)
    w.start()
    for device_id in ids:
        w.submit(outcome(device_id, samples=[("cpu_load_pct", "", 1.0)]))
    w.stop(timeout=60)
    with engine.connect() as conn:
        states = sql.scalars(conn, "SELECT state FROM device_status")
        assert sql.scalar(conn, "SELECT count(*) FROM samples") == 20
    assert states == ["up"] * 20


def test_many_outcomes_are_batched_into_few_transactions(engine: Engine, box: SecretBox, writer: Writer) -> None:
    ids = add_devices(engine, box, *(f"d{i}" for i in range(50)))
    ts = time.time()
    for step in range(10):
        for device_id in ids:
            writer.submit(outcome(device_id, ts=ts + step, samples=[("if_in_bps", IF1, float(step))]))
    assert writer.flush(120)
    assert writer.batches < 500
    assert writer.rows == 500
    assert sql.scalar(engine, "SELECT count(*) FROM samples") == 500


def test_maintain_rolls_up_and_expires(engine: Engine, box: SecretBox, writer: Writer, settings: Settings) -> None:
    (device_id,) = add_devices(engine, box, "sw1")
    # Three samples inside one 5-minute bucket, two hours past raw retention.
    old = (time.time() - (settings.raw_retention_hours + 2) * 3600) // 3600 * 3600 + 60
    commit(writer, *(outcome(device_id, ts=old + 60 * i, samples=[("cpu_load_pct", "", float(i))]) for i in range(3)))
    commit(writer, outcome(device_id, samples=[("cpu_load_pct", "", 50.0)]))
    writer.maintain()
    with engine.connect() as conn:
        raw = sql.scalars(conn, "SELECT value FROM samples")
        by_resolution = {
            r.resolution: (r.vmin, r.vmax, r.n)
            for r in sql.rows(conn, "SELECT resolution, vmin, vmax, n FROM rollups WHERE ts <= :ts", ts=int(old) + 180)
        }
    assert raw == [50.0], "raw samples past retention are gone"
    assert by_resolution == {300: (0.0, 2.0, 3), 3600: (0.0, 2.0, 3)}


def test_maintain_forgets_old_sign_in_attempts_but_each_accounts_newest_sign_in(engine: Engine, writer: Writer) -> None:
    now, day = time.time(), 86400.0
    with engine.begin() as conn:
        for username, ago, ok in [
            ("ada", 91, False), ("ada", 89, False), ("ada", 500, True), ("ada", 450, True), ("ada", 10, True),
            ("bob", 800, True), ("bob", 700, True), ("eve", 1000, False),
        ]:
            accounts.record_login(conn, username, "192.0.2.9", ok, now - ago * day)
    writer.maintain()
    kept = sql.rows(engine, "SELECT username, ts, ok FROM login_attempts")
    assert sorted((u, round((now - ts) / day), bool(ok)) for u, ts, ok in kept) == [
        ("ada", 10, True), ("ada", 89, False), ("bob", 700, True),  # bob's newest sign-in stays: he is a known address
    ]
    with engine.begin() as conn:
        assert accounts.failure_stats(conn, "bob", "192.0.2.9", now - day).known_address


HOSTILE = "<script>alert(1)</script>{{7*7}}\x1b[31m\x00\ud800" + "x" * 65_536


def test_hostile_outcomes_never_stop_the_writer(engine: Engine, box: SecretBox, writer: Writer) -> None:
    bad, good = add_devices(engine, box, "bad", "good")
    commit(
        writer,
        outcome(
            bad,
            error=HOSTILE,
            ok=False,
            facts={"sys_descr": HOSTILE, "weird": math.inf, "nested": [{"v": math.nan}]},
            tables={"interfaces": [{"index": 1, "name": HOSTILE, "speed_bps": math.inf}]},
            samples=[("m_nan", "", math.nan), ("m_inf", "", math.inf), ("m_ok", labels_key({"x": HOSTILE}), 1.0)],
        ),
        outcome(bad, "ssh", ok=False, answered=True, error="\x00" * 10),
    )
    assert writer.errors == 0, "a hostile outcome made the commit fail (the writer would retry it forever)"
    commit(writer, outcome(good, samples=[("m", "", 1.0)]))
    st = status_of(engine, bad)
    assert st.state == "down"
    assert "<script>alert(1)</script>" in st.facts["sys_descr"]
    assert "\x00" not in (st.last_error or "")
    assert status_of(engine, good).state == "up"
    values = sql.scalars(engine, "SELECT value FROM samples")
    assert all(math.isfinite(v) for v in values)


def test_an_unchanged_table_is_not_rewritten_and_a_changed_one_is(engine: Engine, box: SecretBox, writer: Writer) -> None:
    (device_id,) = add_devices(engine, box, "sw1")

    def updates(seen: list[str]) -> list[str]:
        return [s for s in seen if s.lstrip().upper().startswith("UPDATE DEVICE_STATUS")]

    with statements(engine) as seen:
        ports = [{"index": 1, "name": "eth0", "oper": "up"}]
        for ts in (1_800_000_000.0, 1_800_000_060.0):
            commit(writer, outcome(device_id, ts=ts, facts={"uptime_seconds": ts}, tables={"interfaces": list(ports)},
                                   samples=[("cpu_load_pct", "", 5.0)]))
        assert ["tables" in u for u in updates(seen)] == [True, False]  # the same table again: not rewritten
        st = status_of(engine, device_id)
        assert st.tables == {"interfaces": ports} and st.facts == {"uptime_seconds": 1_800_000_060.0}
        assert st.last_polled == 1_800_000_060.0 and st.metrics == {"snmp": [["cpu_load_pct", "", 5.0]]}
        down = [{"index": 1, "name": "eth0", "oper": "down"}]
        commit(writer, outcome(device_id, ts=1_800_000_120.0, tables={"interfaces": down}))
        assert "tables" in updates(seen)[-1]
        assert status_of(engine, device_id).tables == {"interfaces": down}


def test_the_backlog_is_bounded_and_nothing_is_dropped(engine: Engine, box: SecretBox, settings: Settings) -> None:
    ids = add_devices(engine, box, *(f"d{i}" for i in range(30)))
    gate = threading.Event()

    def slow(*_args: Any) -> None:  # a writer that fell behind
        gate.wait(30)

    w = Writer(engine, settings, hooks=[slow])
    w.max_backlog = 10
    w.start()
    try:
        for device_id in ids[:10]:
            w.submit(outcome(device_id, samples=[("cpu_load_pct", "", 1.0)]))
        assert w.backlog == 10 and not w.has_room()
        gate.set()
        assert w.flush(60) and w.has_room() and w.backlog == 0
        for device_id in ids[10:]:
            w.submit(outcome(device_id, samples=[("cpu_load_pct", "", 2.0)]))
    finally:
        gate.set()
        w.stop(timeout=60)
    assert sql.scalar(engine, "SELECT count(*) FROM samples") == 30
