"""A terminal whose socket stays connected still ends when its user may no longer hold it: the grant revoked, the
user disabled or demoted (their sessions end), or the session signed out (the sweeper checks on the manager's
injected clock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store import accounts
from tests.peers.sshd import SshdPeer
from tests.server.conftest import bearer, form_csrf
from tests.server.terminal_helpers import ORIGIN, Clock, TermEnv, make_term_env, read_control, read_until


@pytest.fixture
def env(tmp_path: Path, sshd: SshdPeer) -> Iterator[TermEnv]:
    yield from make_term_env(tmp_path, sshd)


def _patch(env: TermEnv, name: str, body: dict[str, object]) -> None:
    with env.svc.reader.connect() as conn:
        found = accounts.get_user_by_name(conn, name)
        assert found is not None
    r = env.client.patch(f"/api/v1/users/{found[0].id}", json=body, headers=bearer(env.admin_token))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"grants": []}, "permission revoked"),
        ({"role": "viewer"}, "signed out"),
        ({"disabled": True}, "signed out"),
        (None, "signed out"),
    ],
)
def test_a_connected_terminal_ends_when_its_user_loses_it(env: TermEnv, change: dict[str, object] | None, reason: str) -> None:
    clock = Clock()
    env.terminals.clock = clock
    _patch(env, "operator", {"grants": ["terminal"]})
    c = env.client_for("operator")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"echo before-$((1+1))\n")
        read_until(ws, b"before-2")
        if change is None:  # the operator signs out on another tab; the socket is still connected
            r = c.post("/logout", data={"csrf_token": form_csrf(c.get("/account").text)})
            assert r.status_code in (302, 303), r.text
        else:
            _patch(env, "operator", change)
        clock.now += 60  # the sweeper looks again
        deadline = time.monotonic() + 5
        while ready["session"] in env.terminals.live and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ready["session"] not in env.terminals.live, "the shell stayed open for a user who lost it"
        end = read_control(ws, "end")
        assert end["reason"] == reason
    closed = env.audit("terminal.close")[0]
    assert closed["detail"]["session"] == ready["session"] and closed["detail"]["reason"] == reason
    assert ready["session"] not in env.terminals.live
    assert env.recording(ready["session"])[-1][1] in ("o", "i", "r")  # finalized: every line valid JSON
