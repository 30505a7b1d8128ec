"""The terminal's WebSocket against the real sshd: a command and its output, the recording, limits, idle, admin end, resume."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from tests.peers.sshd import SshdPeer
from tests.server.terminal_helpers import ORIGIN, TermEnv, make_term_env, read_control, read_until


@pytest.fixture
def env(tmp_path: Path, sshd: SshdPeer) -> Iterator[TermEnv]:
    yield from make_term_env(tmp_path, sshd)


def test_a_command_runs_and_is_recorded_and_audited(env: TermEnv) -> None:
    c = env.client_for("admin")
    ticket = env.ticket(c, reason="disk full on web-01")
    with c.websocket_connect(f"/terminal/ws?ticket={ticket}&cols=100&rows=30", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"echo hello-$((6*7))\n")
        out, _ = read_until(ws, b"hello-42")
        assert b"hello-42" in out
        ws.send_text('{"t": "r", "c": 120, "r": 40}')
        ws.send_text('{"t": "x"}')
        end = read_control(ws, "end")
    assert end["reason"] == "user"
    session = ready["session"]
    lines = env.recording(session)
    header = lines[0]
    assert header["version"] == 2 and header["width"] == 100 and header["height"] == 30
    assert header["pocketnoc"] == {"user": "admin", "device": "web-01", "reason": "disk full on web-01"}
    kinds = {e[1] for e in lines[1:]}
    assert {"o", "i", "r"} <= kinds
    assert any(e[1] == "i" and "echo hello" in e[2] for e in lines[1:])
    assert any(e[1] == "o" and "hello-42" in e[2] for e in lines[1:])
    opened, closed = env.audit("terminal.open"), env.audit("terminal.close")
    assert opened[0]["target"] == "web-01" and opened[0]["detail"]["reason"] == "disk full on web-01"
    assert closed[0]["detail"]["reason"] == "user" and closed[0]["detail"]["session"] == session
    # The recording is sealed at rest: the stored bytes do not contain the command.
    with env.svc.reader.connect() as conn:
        raw = conn.exec_driver_sql("SELECT data FROM terminal_chunks").fetchall()
    assert raw and all(b"hello" not in bytes(r[0]) for r in raw)


def test_a_ticket_is_single_use_and_bound_to_its_session(env: TermEnv) -> None:
    c = env.client_for("admin")
    ticket = env.ticket(c)
    other = env.client_for("admin")  # the same user, another session: refused
    with other.websocket_connect(f"/terminal/ws?ticket={ticket}", headers=ORIGIN) as ws:
        assert "expired" in read_control(ws, "error")["message"]
    with c.websocket_connect(f"/terminal/ws?ticket={ticket}", headers=ORIGIN) as ws:
        assert "expired" in read_control(ws, "error")["message"]  # used up by the attempt above


def test_cross_origin_and_anonymous_sockets_are_refused(env: TermEnv) -> None:
    c = env.client_for("admin")
    ticket = env.ticket(c)
    with pytest.raises(WebSocketDisconnect) as refused, c.websocket_connect(
        f"/terminal/ws?ticket={ticket}", headers={"origin": "http://evil.example"}
    ):
        pass
    assert refused.value.code == 1008
    with pytest.raises(WebSocketDisconnect), env.client.websocket_connect(f"/terminal/ws?ticket={ticket}", headers=ORIGIN):
        pass


def test_a_big_paste_and_an_oversized_frame(env: TermEnv) -> None:
    c = env.client_for("admin")
    ticket = env.ticket(c)
    with c.websocket_connect(f"/terminal/ws?ticket={ticket}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        # 1 MB pasted into `wc -c` in 16 KB frames, as the page sends it: counted whole, nothing crashes.
        ws.send_bytes(b"stty -echo; wc -c\n")
        paste = b"x" * 1023 + b"\n"
        for _ in range(64):
            ws.send_bytes(paste * 16)
        ws.send_bytes(b"\x04")
        read_until(ws, b"1048576")
        ws.send_bytes(b"x" * (64 * 1024 + 1))  # one frame over the limit: this socket is closed, the session kept
        error = read_control(ws, "error")
    assert "64 KB" in error["message"]
    assert ready["session"] in env.terminals.live
