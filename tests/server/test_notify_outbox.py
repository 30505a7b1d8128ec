"""The outbox and the planner on SQLite and PostgreSQL: same-transaction enqueue, routing, holds, storms, escalation, leases."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet

from server.auth import passwords
from server.keys.secretbox import SecretBox
from server.notify import deliver, planner
from server.notify.config import NotifyConfig
from server.notify.runtime import sync_file_channels
from server.store import alerts as alert_store
from server.store import notify as nstore
from server.store.db import Engine
from server.store.notify_targets import add_subscription
from tests import sql
from tests.server.notify_helpers import add_device, fire, messages, resolve

KEYS = {"p256dh": "B" + "A" * 86, "auth": "A" * 22}


def _config(**extra: Any) -> NotifyConfig:
    base: dict[str, Any] = {
        "channels": [{"name": "ops", "url": "json://127.0.0.1:9/ops"}, {"name": "mail", "url": "json://127.0.0.1:9/mail"}],
        "delivery": {"burst": 3, "burst_window_seconds": 60, "summary_delay_seconds": 0},
    }
    base.update(extra)
    return NotifyConfig.model_validate(base)


def _setup(engine: Engine, config: NotifyConfig, users: tuple[str, ...] = ("pat",)) -> SecretBox:
    box = SecretBox(Fernet.generate_key())
    with engine.begin() as conn:
        for name in users:
            user_id = passwords.create_user(conn, name, "operator", "correct horse battery")
            add_subscription(conn, box, user_id, {"endpoint": f"https://push.example.net/{name}", **KEYS}, "https://push.example.net",
                             name, time.time())
        assert sync_file_channels(conn, box, config, time.time()) == []
    return box


def _plan(engine: Engine, config: NotifyConfig, at: float | None = None) -> int:
    with engine.begin() as conn:
        return planner.plan(conn, config, at if at is not None else time.time())


def test_the_outbox_row_is_written_in_the_alert_transaction(engine: Engine) -> None:
    device = add_device(engine)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        alert_store.fire_event_alert(conn, "device-down", device, "", "critical", "down", time.time(), "down")
        assert sql.scalars(conn, "SELECT kind FROM notify_outbox") == ["fired"]
        raise RuntimeError("the alert change fails after record_event")
    with engine.connect() as conn:
        assert sql.rows(conn, "SELECT * FROM notify_outbox") == []
        assert sql.rows(conn, "SELECT * FROM alerts") == []
    alert_id = fire(engine, device)
    with engine.begin() as conn:
        alert_store.add_note(conn, alert_id, "pat", "a note does not notify")
        alert_store.acknowledge(conn, alert_id, "pat")
    with engine.connect() as conn:
        kinds = sql.scalars(conn, "SELECT kind FROM notify_outbox ORDER BY id")
    assert kinds == ["fired", "acknowledged"]


def test_a_fired_alert_reaches_routes_once_and_the_resolve_goes_to_whoever_was_notified(engine: Engine) -> None:
    config = _config(routes=[{"name": "core", "match": {"tags": ["core"]}, "users": ["pat"], "channels": ["ops"]},
                             {"name": "all", "channels": ["ops", "mail"]}])
    _setup(engine, config, ("pat", "sam"))
    core = add_device(engine, "core-sw1", ["core"])
    edge = add_device(engine, "edge-1", ["edge"])
    fire(engine, core)
    fire(engine, edge, "edge-1 is down")
    _plan(engine, config)
    sent = [(m.target_type, m.payload["device"], m.kind, m.dedup_key) for m in messages(engine)]
    # core: pat's phone + ops + mail (ops once, though two routes name it); edge: ops + mail; sam is on no route.
    c = ("core-sw1", "trigger", "pocketnoc-1-1")
    e = ("edge-1", "trigger", "pocketnoc-2-1")
    assert sorted(sent) == sorted([("push", *c), ("channel", *c), ("channel", *c), ("channel", *e), ("channel", *e)])
    with engine.begin() as conn:
        sql.run(conn, "UPDATE notify_messages SET status = :status", status="sent")
    resolve(engine, core)
    _plan(engine, config)
    resolves = messages(engine, kind="resolve")
    assert len(resolves) == 3 and {m.dedup_key for m in resolves} == {"pocketnoc-1-1"}
    assert _plan(engine, config) == 0, "nothing is planned twice"


@pytest.mark.parametrize("hold", ["suppressed", "silenced", "snoozed", "acknowledged"])
def test_held_alerts_are_not_notified_until_the_hold_ends(engine: Engine, hold: str) -> None:
    config = _config(delivery={"recheck_seconds": 0.01, "summary_delay_seconds": 0})
    _setup(engine, config)
    device = add_device(engine)
    alert_id = fire(engine, device)
    now = time.time()
    with engine.begin() as conn:
        if hold == "suppressed":
            sql.run(conn, "UPDATE alerts SET suppressed_by = :device", device=device)
        elif hold == "silenced":
            sql.insert(conn, "silences", comment="", device_id=device, everything=False, starts_at=now - 1, ends_at=now + 3600,
                       created_at=now)
        elif hold == "snoozed":
            alert_store.snooze(conn, alert_id, "pat", 3600)
        else:
            alert_store.acknowledge(conn, alert_id, "pat")
    _plan(engine, config)
    _plan(engine, config, time.time() + 1)
    assert messages(engine) == []
    with engine.begin() as conn:
        if hold == "suppressed":
            sql.run(conn, "UPDATE alerts SET suppressed_by = NULL")
            alert_store.record_event(conn, alert_id, "unsuppressed", None, "outage over")
        elif hold == "silenced":
            sql.run(conn, "DELETE FROM silences")
        elif hold == "snoozed":
            alert_store.snooze(conn, alert_id, "pat", 0)
        else:
            alert_store.unacknowledge(conn, alert_id, "pat")
    _plan(engine, config, time.time() + 2)
    if hold == "suppressed":  # uncovered by its parent's recovery: one poll (interval 60 s + timeout 5 s) of grace first
        assert messages(engine) == []
        _plan(engine, config, time.time() + 70)
    got = messages(engine)
    assert {m.target_type for m in got} == {"push", "channel"}
    assert all(m.status == "pending" for m in got)


def test_a_mass_outage_is_a_few_messages_and_one_summary_per_target(engine: Engine) -> None:
    config = _config(routes=[{"name": "all", "channels": ["ops"]}])
    _setup(engine, config)
    for i in range(50):
        fire(engine, add_device(engine, f"access-{i}"), f"access-{i} is down")
    _plan(engine, config)
    ops = messages(engine, target_type="channel")
    assert len([m for m in ops if m.status == "pending" and m.kind == "trigger"]) == 3
    summaries = [m for m in ops if m.kind == "summary"]
    assert len(summaries) == 1
    assert len([m for m in ops if m.status == "grouped" and m.summary_id == summaries[0].id]) == 47


def test_the_summary_leaves_out_what_was_acknowledged_meanwhile(engine: Engine) -> None:
    config = _config(routes=[{"name": "all", "channels": ["ops"]}])
    box = _setup(engine, config)
    ids = [fire(engine, add_device(engine, f"d{i}"), f"d{i} is down") for i in range(6)]
    _plan(engine, config)
    with engine.begin() as conn:
        alert_store.acknowledge(conn, ids[-1], "pat")
    jobs = deliver.claim(engine, box, config, None, 50)
    summary = next(j for j in jobs if j.row.kind == "summary")
    assert summary.note is not None
    assert summary.note.payload["count"] == 2 and summary.note.heading == "2 alerts firing"
    assert "d5 is down" not in summary.note.text and "d4 is down" in summary.note.text
    assert [m.status for m in messages(engine) if m.alert_id == ids[-1]] == ["skipped"]


def test_escalation_steps_loops_and_acknowledge(engine: Engine) -> None:
    config = _config(
        routes=[{"name": "core", "users": ["pat"], "escalation": "night"}],
        escalations=[{"name": "night", "loops": 2, "steps": [{"after_minutes": 10, "users": ["sam"]},
                                                              {"after_minutes": 5, "channels": ["ops"]}]}],
    )
    _setup(engine, config, ("pat", "sam"))
    alert_id = fire(engine, add_device(engine))
    t0 = time.time()
    _plan(engine, config, t0)
    assert [(m.kind, m.user_id) for m in messages(engine)] == [("trigger", 1)]
    _plan(engine, config, t0 + 599)
    assert len(messages(engine)) == 1
    _plan(engine, config, t0 + 601)
    assert [(m.kind, m.user_id, m.payload["step"]) for m in messages(engine, kind="escalate")] == [("escalate", 2, 1)]
    _plan(engine, config, t0 + 601 + 301)
    assert [m.target_type for m in messages(engine, kind="escalate")] == ["push", "channel"]
    _plan(engine, config, t0 + 902 + 601)  # second loop, step 1 again
    assert len(messages(engine, kind="escalate")) == 3
    with engine.begin() as conn:
        alert_store.acknowledge(conn, alert_id, "sam")
    _plan(engine, config, t0 + 5000)
    _plan(engine, config, t0 + 9000)
    assert len(messages(engine, kind="escalate")) == 3, "an acknowledgement stops escalation"


def test_claims_lease_messages_and_keep_trigger_before_resolve(engine: Engine) -> None:
    config = _config(routes=[{"name": "all", "channels": ["ops"]}])
    box = _setup(engine, config)
    device = add_device(engine)
    fire(engine, device)
    _plan(engine, config)
    first = deliver.claim(engine, box, config, None, 10)
    assert [j.row.kind for j in first] == ["trigger"]
    assert deliver.claim(engine, box, config, None, 10) == [], "a leased message is not claimed twice"
    with engine.begin() as conn:
        nstore.finish_message(conn, first[0].row, time.time(), "retry", "HTTP 503", "", 1.0, time.time() + 3600)
    resolve(engine, device)
    _plan(engine, config)
    with engine.begin() as conn:  # pretend the trigger reached the target earlier, so the resolve is for someone
        later = time.time() + 3600
        sql.run(conn, "UPDATE notify_messages SET next_at = :later WHERE kind = :kind", later=later, kind="trigger")
    assert deliver.claim(engine, box, config, None, 10) == [], "the resolve waits behind its trigger"
    with engine.begin() as conn:
        sql.run(conn, "UPDATE notify_messages SET next_at = :next_at WHERE kind = :kind", next_at=0, kind="trigger")
    assert [j.row.kind for j in deliver.claim(engine, box, config, None, 10)] == ["trigger"]


def test_concurrent_claimers_never_take_the_same_message(engine: Engine) -> None:
    config = _config(routes=[{"name": "all", "channels": ["ops", "mail"]}], delivery={"burst": 1000})
    box = _setup(engine, config)
    for i in range(40):
        fire(engine, add_device(engine, f"d{i}"))
    _plan(engine, config)
    taken: list[int] = []
    lock = threading.Lock()

    def claimer() -> None:
        while True:
            jobs = deliver.claim(engine, box, config, None, 7)
            if not jobs:
                return
            with lock:
                taken.extend(j.row.id for j in jobs)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(taken) == 80 and len(set(taken)) == 80


def test_routing_by_severity_tag_and_time_with_quiet_hours(engine: Engine) -> None:
    always = {"start": "00:00", "end": "00:00"}  # the whole day, every day
    config = _config(routes=[
        {"name": "night", "match": {"tags": ["core"]}, "users": ["pat"], "quiet_hours": always},
        {"name": "other-day", "match": {"severity": ["info"]}, "channels": ["mail"],
         "when": {**always, "days": [(time.gmtime().tm_wday + 3) % 7]}},
        {"name": "warnings", "match": {"severity": ["warning"], "tags": ["edge"]}, "channels": ["ops"]},
    ])
    _setup(engine, config)
    core = add_device(engine, "core-sw1", ["core"])
    edge = add_device(engine, "edge-1", ["edge"])
    fire(engine, core, "core-sw1 cpu high", severity="warning", rule="cpu")  # quiet hours: not critical, held back
    fire(engine, core, "core-sw1 is down", severity="critical")  # critical breaks through quiet hours
    fire(engine, edge, "edge-1 cpu high", severity="warning", rule="cpu")  # severity + tag route
    fire(engine, edge, "edge-1 note", severity="info", rule="info")  # its route applies on another weekday only
    _plan(engine, config)
    got = sorted((m.target_type, m.payload["title"]) for m in messages(engine))
    assert got == [("channel", "edge-1 cpu high"), ("push", "core-sw1 is down")]
