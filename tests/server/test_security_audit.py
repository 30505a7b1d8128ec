"""The audit log: what is recorded, append-only in the database, paged for admins, exports and log lines that cannot be
forged."""

from __future__ import annotations

import csv
import io
import json
import logging

import pytest

from server import logsafe
from server.services import audit as auditlog
from server.store import accounts
from server.store import alerts as alerts_store
from server.store.db import DBAPIError, Engine
from server.store.metrics import labels_key
from tests import sql
from tests.server.conftest import AppEnv, bearer, form_csrf, sign_in
from tests.server.security_helpers import (
    TotpClock,
    user_with_totp,
)


def _actions(env: AppEnv) -> list[tuple[str, str | None, str, str]]:
    with env.svc.reader.connect() as conn:
        rows = sql.rows(conn, "SELECT action, username, target, ip FROM audit ORDER BY id")
        return [tuple(r) for r in rows]


def test_sign_ins_2fa_and_user_changes_are_audited_with_who_when_where(app_env: AppEnv, clock: TotpClock) -> None:
    page = app_env.client.get("/login")
    app_env.client.post("/login", data={"username": "ghost\nlogin ok", "password": "x" * 10, "csrf_token": form_csrf(page.text)})
    client, _, _ = user_with_totp(app_env, "amy", "admin", clock)
    page = client.get("/admin/users")
    client.post("/admin/users", data={"name": "bo", "role": "viewer", "password": "", "csrf_token": form_csrf(page.text)})
    bo = next(u for u in client.get("/api/v1/users").json()["items"] if u["name"] == "bo")
    page = client.get(f"/admin/users/{bo['id']}")
    client.post(f"/admin/users/{bo['id']}/role", data={"role": "operator", "csrf_token": form_csrf(page.text)})
    client.post(f"/admin/users/{bo['id']}/disable", data={"csrf_token": form_csrf(page.text)})
    client.post(f"/admin/users/{bo['id']}/enable", data={"csrf_token": form_csrf(page.text)})
    client.post(f"/admin/users/{bo['id']}/reset-2fa", data={"csrf_token": form_csrf(page.text)})
    seen = _actions(app_env)
    assert ("login.failed", None, "ghost\nlogin ok", "testclient") in seen
    assert ("login", "amy", "amy", "testclient") in seen
    assert ("2fa.totp_enabled", "amy", "amy", "testclient") in seen
    for action in ("user.create", "user.role", "user.disable", "user.enable", "2fa.reset"):
        assert (action, "amy", "bo", "testclient") in seen, action


def test_the_audit_log_is_append_only_in_the_database(engine: Engine) -> None:
    with engine.begin() as conn:
        accounts.write_audit(conn, None, "test.entry", "x")
    for statement in ("UPDATE audit SET action = 'forged'", "DELETE FROM audit"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            sql.run(conn, statement)
    with engine.connect() as conn:
        assert sql.scalars(conn, "SELECT action FROM audit") == ["test.entry"]


def test_admins_page_through_the_audit_log(app_env: AppEnv) -> None:
    with app_env.svc.engine.begin() as conn:
        for n in range(120):
            sql.insert(conn, "audit", ts=1_700_000_000 + n, action=f"test.{n}", target="<b>t</b>", detail={})
    app_env.user("adm", "admin")
    app_env.user("viv", "viewer")
    sign_in(app_env.client, "viv")
    assert app_env.client.get("/admin/audit").status_code == 403
    sign_in(app_env.client, "adm")
    first = app_env.client.get("/admin/audit")
    assert first.status_code == 200 and "test.119" in first.text and "test.60" not in first.text
    assert "&lt;b&gt;t&lt;/b&gt;" in first.text
    older = app_env.client.get("/admin/audit?before=70&limit=50")
    assert "test.50" in older.text and "test.70" not in older.text


def test_exports_are_escaped_against_forging(app_env: AppEnv) -> None:
    nasty = 'eve\nlogin,admin,ok\r\n=HYPERLINK("http://x")'
    with app_env.svc.engine.begin() as conn:
        accounts.write_audit(conn, None, "login.failed", nasty, {"why": "a\nb"}, "192.0.2.1")
        sql.insert(conn, "audit", ts=1.0, username="=cmd|' /C calc'!A0", action="+x", target="-1", detail={})
    token = app_env.token("exp", "admin")
    viewer = app_env.token("peek", "viewer")
    assert app_env.client.get("/api/v1/audit/export?format=csv", headers=bearer(viewer)).status_code == 403
    as_csv = app_env.client.get("/api/v1/audit/export?format=csv", headers=bearer(token))
    assert as_csv.status_code == 200 and as_csv.headers["content-disposition"].startswith("attachment")
    lines = as_csv.text.split("\r\n")
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert len([line for line in lines if line]) == len(rows) == 3  # header + 2 entries: no injected line
    assert rows[0] == list(auditlog.COLUMNS)
    forged = rows[1]
    assert forged[4].startswith("eve\\nlogin,admin,ok\\r\\n")
    formula = rows[2]
    assert formula[2].startswith("'=") and formula[3] == "'+x" and formula[4] == "'-1"
    as_jsonl = app_env.client.get("/api/v1/audit/export?format=jsonl", headers=bearer(token))
    entries = [json.loads(line) for line in as_jsonl.text.splitlines()]
    assert len(entries) == 2 and entries[0]["target"] == nasty and entries[0]["detail"] == {"why": "a\nb"}
    assert app_env.client.get("/api/v1/audit/export?format=xml", headers=bearer(token)).status_code == 422


def test_log_lines_cannot_be_forged(app_env: AppEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pocketnoc.audit")
    page = app_env.client.get("/login")
    name = "mallory\n2030-01-01 INFO audit action=login\x1b[2J"
    app_env.client.post("/login", data={"username": name, "password": "x" * 10, "csrf_token": form_csrf(page.text)})
    lines = [r.getMessage() for r in caplog.records if r.name == "pocketnoc.audit"]
    assert lines and all("\n" not in line and "\x1b" not in line for line in lines)
    assert any("mallory\\n2030-01-01" in line and "\\x1b[2J" in line for line in lines)
    formatter = logsafe.SafeFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "user %s", ("a\r\nb\u2028c",), None)
    assert formatter.format(record) == "INFO user a\\r\\nb\\u2028c"


def test_alert_work_silences_and_config_changes_are_audited(app_env: AppEnv) -> None:
    """Acks, snoozes, notes, silences (pages and API) and device/rule changes: who, when, where, what."""
    admin = bearer(app_env.token("root", "admin"))
    made = app_env.client.post("/api/v1/devices", json={"name": "sw1", "address": "192.0.2.7"}, headers=admin)
    device = made.json()["id"]
    assert app_env.client.patch(f"/api/v1/devices/{device}", json={"tags": ["core"]}, headers=admin).status_code == 200
    with app_env.svc.engine.begin() as conn:
        for key in ("a", "b"):
            alerts_store.fire_event_alert(conn, "trap", device, labels_key({"k": key}), "warning", "link down", 1.0, "t")
        first, second = sql.scalars(conn, "SELECT id FROM alerts ORDER BY id")
    app_env.user("opal", "operator")
    sign_in(app_env.client, "opal")
    page = app_env.client.get(f"/alerts/{first}")
    acked = app_env.client.post(f"/alerts/{first}/ack", data={"csrf_token": form_csrf(page.text), "note": "on it"})
    assert acked.status_code == 303, acked.text
    operator = bearer(app_env.token("opal"))
    assert app_env.client.post(f"/api/v1/alerts/{second}/snooze", json={"minutes": 30}, headers=operator).status_code == 200
    assert app_env.client.post(f"/api/v1/alerts/{second}/notes", json={"note": "cable"}, headers=operator).status_code == 200
    page = app_env.client.get("/silences")
    form = {"scope": "device", "target": "sw1", "comment": "maintenance", "hours": "2", "csrf_token": form_csrf(page.text)}
    assert app_env.client.post("/silences", data=form).status_code == 303
    api_silence = app_env.client.post("/api/v1/silences", json={"tag": "core", "duration_minutes": 5}, headers=operator)
    assert api_silence.status_code == 201, api_silence.text
    silence_id = api_silence.json()["id"]
    assert app_env.client.delete(f"/api/v1/silences/{silence_id}", headers=operator).status_code == 204
    assert app_env.client.delete(f"/api/v1/devices/{device}", headers=admin).status_code == 204
    with app_env.svc.reader.connect() as conn:
        rows = sql.records(conn, "audit")
    seen = {(r.action, r.username, r.target) for r in rows}
    for entry in (
        ("device.create", "root", "sw1"),
        ("device.update", "root", "sw1"),
        ("alert.ack", "opal", str(first)),
        ("alert.snooze", "opal", str(second)),
        ("alert.note", "opal", str(second)),
        ("silence.create", "opal", str(silence_id)),
        ("silence.delete", "opal", str(silence_id)),
        ("device.delete", "root", "sw1"),
    ):
        assert entry in seen, (entry, sorted(seen))
    assert len([r for r in rows if r.action == "silence.create"]) == 2  # the page's one too
    ack = next(r for r in rows if r.action == "alert.ack")
    assert ack.ip == "testclient" and ack.ts > 1_700_000_000 and ack.detail.get("note") == "on it"
