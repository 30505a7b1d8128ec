"""Terminal limits against the real sshd: idle and maximum time (an injected clock), an admin ending a session, resume after
a dropped connection (and its grace running out), garbage bytes from the server, retention."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store import terminal as store
from tests.peers.sshd import SshdPeer
from tests.server.conftest import form_csrf
from tests.server.terminal_helpers import ORIGIN, Clock, TermEnv, make_term_env, read_control, read_until


@pytest.fixture
def env(tmp_path: Path, sshd: SshdPeer) -> Iterator[TermEnv]:
    yield from make_term_env(tmp_path, sshd, terminal_idle_minutes=5, terminal_max_minutes=30, terminal_resume_seconds=20)


@pytest.fixture
def clock(env: TermEnv) -> Clock:
    c = Clock()
    env.terminals.clock = c
    return c


def test_an_idle_session_is_ended_and_its_recording_kept(env: TermEnv, clock: Clock) -> None:
    c = env.client_for("admin")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"echo before-idle\n")
        read_until(ws, b"before-idle")
        clock.now += 4 * 60  # typing resets the idle clock; output alone does not
        ws.send_bytes(b"echo tick\n")
        read_until(ws, b"tick")  # the echo comes after the keystrokes were taken (and the clock read)
        clock.now += 4 * 60
        time.sleep(0.7)  # a sweep runs (every 0.5 s): 4 minutes since the last keystroke is not idle yet
        assert ready["session"] in env.terminals.live
        clock.now += 61
        assert read_control(ws, "end")["reason"] == "idle"
    assert env.audit("terminal.close")[0]["detail"]["reason"] == "idle"
    assert any(e[1] == "o" and "before-idle" in e[2] for e in env.recording(ready["session"])[1:])


def test_the_maximum_duration_ends_a_busy_session(env: TermEnv, clock: Clock) -> None:
    c = env.client_for("admin")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        read_control(ws, "ready")
        for _ in range(4):
            clock.now += 8 * 60
            ws.send_bytes(b"\n")
        assert read_control(ws, "end")["reason"] == "max duration"


def test_an_admin_sees_live_sessions_and_ends_one(env: TermEnv) -> None:
    env.user("boss", "admin")
    c = env.client_for("admin")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c, reason='rotating logs')}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        boss = env.client_for("boss")
        page = boss.get("/terminal")
        assert page.status_code == 200 and "rotating logs" in page.text and f"/terminal/{ready['session']}/end" in page.text
        assert env.client_for("operator").get("/terminal").status_code == 403
        r = boss.post(f"/terminal/{ready['session']}/end", data={"csrf_token": form_csrf(page.text)})
        assert r.status_code == 303
        assert read_control(ws, "end")["reason"] == "ended by admin"
    closed = env.audit("terminal.close")[0]
    assert closed["username"] == "boss" and closed["detail"]["ended_by"] == "boss"
    assert closed["detail"]["reason"] == "ended by admin"
    assert ready["session"] not in env.terminals.live


def test_a_dropped_connection_resumes_with_the_output_it_missed(env: TermEnv, clock: Clock) -> None:
    c = env.client_for("admin")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"sleep 0.3; echo missed-$((40+2))\n")  # the page drops mid-command
    time.sleep(0.6)
    with c.websocket_connect(f"/terminal/ws?resume={ready['resume']}", headers=ORIGIN) as ws:
        again = read_control(ws, "ready")
        assert again["session"] == ready["session"] and again["resume"] != ready["resume"]
        read_until(ws, b"missed-42")
        ws.send_bytes(b"echo still-here\n")
        read_until(ws, b"still-here")
    # The old token is spent; a resume from another user's session is refused.
    with c.websocket_connect(f"/terminal/ws?resume={ready['resume']}", headers=ORIGIN) as ws:
        assert "cannot be resumed" in read_control(ws, "error")["message"]
    other = env.client_for("operator")
    with other.websocket_connect(f"/terminal/ws?resume={again['resume']}", headers=ORIGIN) as ws:
        assert "cannot be resumed" in read_control(ws, "error")["message"]
    # Past the grace period the session ends as "connection lost", recorded and audited.
    clock.now += 21
    deadline = time.monotonic() + 5
    while ready["session"] in env.terminals.live and time.monotonic() < deadline:
        time.sleep(0.1)
    assert env.audit("terminal.close")[0]["detail"]["reason"] == "connection lost"
    with c.websocket_connect(f"/terminal/ws?resume={again['resume']}", headers=ORIGIN) as ws:
        assert "ended" in read_control(ws, "error")["message"]
    lines = env.recording(ready["session"])
    assert any(e[1] == "o" and "missed-42" in e[2] for e in lines[1:])


def test_garbage_from_the_server_keeps_the_recording_valid(env: TermEnv) -> None:
    c = env.client_for("admin")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"head -c 20000 /dev/urandom; printf '\\303'; echo; echo done-$((2*3))\n")
        out, _ = read_until(ws, b"done-6")
        ws.send_text("not json")  # ignored
        ws.send_text('{"t": "r", "c": "wide"}')  # ignored
        ws.send_text('{"t": "x"}')
        read_control(ws, "end")
    assert len(out) > 20000
    lines = env.recording(ready["session"])  # every line parses (json.loads in the helper)
    text = "".join(e[2] for e in lines[1:] if e[1] == "o")
    assert "\ufffd" in text and "done-6" in text


def test_old_recordings_are_pruned(env: TermEnv, clock: Clock) -> None:
    c = env.client_for("admin")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_text('{"t": "x"}')
        read_control(ws, "end")
    clock.now += env.svc.settings.terminal_retention_days * 86400 + 3601
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with env.svc.reader.connect() as conn:
            if store.get(conn, ready["session"]) is None:
                break
        time.sleep(0.1)
    with env.svc.reader.connect() as conn:
        assert store.get(conn, ready["session"]) is None
        assert store.chunk_count(conn, ready["session"]) == 0
