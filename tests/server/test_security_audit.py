"""The audit log: what is recorded, append-only in the database, paged for admins, exports and log lines that cannot be
forged."""

from __future__ import annotations

import csv
import io
import json
import logging

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import DBAPIError

from server import auditlog, logsafe
from server.store import accounts
from server.store.schema import audit
from tests.server.conftest import AppEnv, bearer, form_csrf, sign_in
from tests.server.security_helpers import (
    TotpClock,
    clock_fixture,  # noqa: F401 - the `clock` fixture
    user_with_totp,
)


def _actions(env: AppEnv) -> list[tuple[str, str | None, str, str]]:
    with env.svc.reader.connect() as conn:
        rows = conn.execute(select(audit.c.action, audit.c.username, audit.c.target, audit.c.ip).order_by(audit.c.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


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
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(select(audit.c.action)).scalars().all() == ["test.entry"]


def test_admins_page_through_the_audit_log(app_env: AppEnv) -> None:
    with app_env.svc.engine.begin() as conn:
        for n in range(120):
            conn.execute(insert(audit).values(ts=1_700_000_000 + n, action=f"test.{n}", target="<b>t</b>", detail={}))
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
        conn.execute(insert(audit).values(ts=1.0, username="=cmd|' /C calc'!A0", action="+x", target="-1", detail={}))
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
