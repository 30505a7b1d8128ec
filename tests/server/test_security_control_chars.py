"""Terminal escapes from devices never go out raw: ESC shows as the text \\x1b in pages, API, logs and notifications."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from server.config.settings import Settings
from server.logsafe import visible
from tests import sql
from tests.peers.receiver import Receiver, start_receiver
from tests.peers.snmpd import SnmpdPeer, free_udp_port, start_snmpd
from tests.peers.traps import send, v2c_args
from tests.server.app_fleet import free_port
from tests.server.conftest import POCKETNOC, bearer, make_app_env, run_cli

T = TypeVar("T")
LOCATION = "\x1b[2Jrack\x07 7"  # clear the screen, ring the bell
SHOWN = "\\x1b[2Jrack\\x07 7"  # what every reader sees instead
IF_NAME_1 = "1.3.6.1.2.1.31.1.1.1.1.1"
COLD_START = "1.3.6.1.6.3.1.1.5.1"
RAW = (b"\x1b", b"\x07", b"\\u001b", b"\\u0007")  # raw bytes, and JSON escapes a `jq -r` would turn back into them


def _wait(check: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _clean(what: str, data: bytes) -> None:
    for raw in RAW:
        assert raw not in data, (what, raw, data[:2000])


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[SnmpdPeer]:
    peer = start_snmpd(tmp_path, sys_location=LOCATION, extra_lines=(f'override .{IF_NAME_1} octet_str "lo\x1b[2J\x07"',))
    yield peer
    peer.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    peer = start_receiver()
    yield peer
    peer.stop()


def test_device_and_trap_escapes_are_visible_text_in_pages_api_log_and_webhook(
    tmp_path: Path, snmpd: SnmpdPeer, receiver: Receiver
) -> None:
    trap_port, port, data = free_udp_port(), free_port(), tmp_path / "data"
    (tmp_path / "channels.yaml").write_text(
        f'channels:\n  - {{name: hook, url: "http://127.0.0.1:{receiver.port}/hook"}}\n'
        "delivery: {poll_seconds: 0.2, backoff_seconds: 0.2, backoff_max_seconds: 1, timeout_seconds: 5, lease_seconds: 6}\n")
    (tmp_path / "rules.yaml").write_text(
        "defaults: true\nrules:\n  - name: port-seen\n    expr: \"if_oper_up == 1\"\n    arm: null\n    for: 0\n"
        "    severity: warning\n    title: \"{device}: port {ifName} is up\"\n    match: {labels: {ifIndex: \"1\"}}\n")
    config = tmp_path / "pocketnoc.yaml"
    config.write_text(f"""
settings:
  trap_host: 127.0.0.1
  trap_port: {trap_port}
  trap_communities: [tr4p]
  channels_file: channels.yaml
  rules_file: rules.yaml
  writer_batch_seconds: 0.05
devices:
  - name: hostile-sw
    address: 127.0.0.1
    interval: 3600
    snmp: {{version: 2c, port: {snmpd.port}, community: {snmpd.community}}}
""")
    added = run_cli("user", "add", "ops", "--role", "operator", "--data-dir", data, "--config", config,
                    input_text="correct horse battery\n")
    assert added.returncode == 0, added.stderr
    token = run_cli("token", "create", "ops", "--data-dir", data, "--config", config).stdout.strip().splitlines()[-1]
    log_path = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("POCKETNOC_")}
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(POCKETNOC), "serve", "--config", str(config), "--data-dir", str(data), "--port",
                                   str(port)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=bearer(token), timeout=30)
    try:
        def up() -> bool:
            assert server.poll() is None, log_path.read_text(errors="replace")
            try:
                return api.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        _wait(up, "the server")
        device_id = api.get("/api/v1/devices").json()["items"][0]["id"]
        assert api.post(f"/api/v1/devices/{device_id}/poll").status_code == 200
        send(v2c_args(trap_port, COLD_START, [("1.3.6.1.2.1.2.2.1.2.7", "x", "1B5B324A07")], community="tr4p"))

        detail = api.get(f"/api/v1/devices/{device_id}")
        _clean("device JSON", detail.content)
        assert detail.json()["facts"]["sys_location"] == SHOWN, "the raw bytes stay readable, as escaped data"
        page = api.get(f"/devices/{device_id}")
        _clean("device page", page.content)
        assert SHOWN in page.text

        traps = _wait(lambda: api.get("/api/v1/traps").json()["items"], "the trap")
        _clean("traps JSON", api.get("/api/v1/traps").content)
        assert any("\\x1b[2J\\x07" in value for _oid, value in traps[0]["varbinds"]), traps[0]
        alerts = _wait(lambda: [a for a in api.get("/api/v1/alerts").json()["items"] if a["rule"] in ("trap", "port-seen")
                                ] if len(api.get("/api/v1/alerts").json()["items"]) >= 2 else None, "two alerts")
        for alert in alerts:
            for path in (f"/api/v1/alerts/{alert['id']}", f"/alerts/{alert['id']}"):
                _clean(path, api.get(path).content)
        trap_alert = next(a for a in alerts if a["rule"] == "trap")
        events = api.get(f"/api/v1/alerts/{trap_alert['id']}").json()["events"]
        assert any("\\x1b[2J\\x07" in (e["text"] or "") for e in events), events
        assert "\\x1b[2J\\x07" in api.get(f"/alerts/{trap_alert['id']}").text

        hooks = receiver.wait_for(1, lambda r: "port lo" in str((r.json or {}).get("title")), timeout=30)
        _clean("webhook body", hooks[0].body)
        assert "port lo\\x1b[2J\\x07 is up" in hooks[0].json["title"]
        assert "port lo\\x1b[2J\\x07 is up" in hooks[0].json["alert"]["title"]

        logged = _wait(lambda: b"fired: hostile-sw: port lo" in log_path.read_bytes() and log_path.read_bytes(), "log")
        _clean("log file", logged)
        assert b"port lo\\x1b[2J\\x07 is up" in logged
    finally:
        api.close()
        server.terminate()
        server.wait(30)


def test_text_stored_raw_before_the_fix_is_still_shown_escaped(settings: Settings) -> None:
    for env in make_app_env(settings):
        token = env.token("root", "admin")
        created = env.client.post("/api/v1/devices", json={"name": "old-sw", "address": "192.0.2.7"},
                                  headers=bearer(token))
        assert created.status_code == 201, created.text
        device_id = created.json()["id"]
        with env.svc.engine.begin() as conn:  # a row written by an older pocketnoc, ESC and all
            raw = {"sys_location": LOCATION, "sys_descr": "line 1\n\tline 2\u202e"}
            sql.update(conn, "device_status", "device_id = :d", {"facts": raw}, d=device_id)
        answer = env.client.get(f"/api/v1/devices/{device_id}", headers=bearer(token))
        _clean("API", answer.content)
        facts = answer.json()["facts"]
        assert facts["sys_location"] == SHOWN and facts["sys_descr"] == "line 1\n\tline 2\\u202e", "\\n and \\t stay"
        page = env.client.get(f"/devices/{device_id}", headers=bearer(token))
        _clean("page", page.content)
        assert SHOWN in page.text


def test_one_rule_for_every_control_character() -> None:
    assert visible("a\x1b[2J\x07b\x00c\x7f\x9b\u2028\u202e") == "a\\x1b[2J\\x07b\\x00c\\x7f\\x9b\\u2028\\u202e"
    assert visible("one\ntwo\tthree\r\n") == "one\\ntwo\\tthree\\r\\n", "one line where lines are not expected"
    assert visible("one\ntwo\tthree\r\nfour\r", multiline=True) == "one\ntwo\tthree\nfour\\r", "multi-line output"
    assert visible(visible("\x1b")) == "\\x1b", "idempotent: escaped text has nothing left to escape"
    assert json.loads(json.dumps(visible("\x1b"))) == "\\x1b"


def test_push_payloads_and_emails_show_device_escapes_as_text() -> None:
    from types import SimpleNamespace

    from server.notify.channels.email import Email
    from server.notify.message import alert_payload, build_note, push_json

    alert = SimpleNamespace(id=7, episode=1, severity="critical", title=f"sw1: location {LOCATION}", device_name="sw1",
                            rule="device-down", started_at=1.0e9, resolved_at=None)
    note = build_note(alert_payload("trigger", alert), "pocketnoc-7-1", "https://noc.example.net")
    mail = Email("smtp://127.0.0.1:2525/?from=noc@example.net&to=oncall@example.net&starttls=no").message(note)
    push = json.dumps(push_json(note, "t" * 43, True)).encode()
    for what, data in (("push", push), ("e-mail", mail.as_bytes()), ("webhook payload", json.dumps(note.payload).encode())):
        _clean(what, data)
    shown = "\\x1b[2Jrack\\x07"
    assert shown in json.loads(push)["title"] and shown in note.heading and shown in note.html
    plain, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None and html is not None
    assert shown in plain.get_content() and shown in html.get_content()
