"""Recordings are for admins only (operators holding the grant, viewers, bearer tokens are refused) and sealed at rest:
what was typed and shown is not in the database file's bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.store import accounts, grants
from tests.peers.sshd import SshdPeer
from tests.server.conftest import bearer
from tests.server.terminal_helpers import ORIGIN, TermEnv, make_term_env, read_control, read_until


@pytest.fixture
def env(tmp_path: Path, sshd: SshdPeer) -> Iterator[TermEnv]:
    yield from make_term_env(tmp_path, sshd)


def test_recordings_are_admin_only_and_sealed(env: TermEnv, tmp_path: Path) -> None:
    with env.svc.engine.begin() as conn:
        found = accounts.get_user_by_name(conn, "operator")
        assert found is not None
        grants.add(conn, found[0].id, ["terminal"], "test")
        viewer = accounts.get_user_by_name(conn, "viewer")
        assert viewer is not None
        viewer_token = accounts.new_token(conn, viewer[0].id, "stolen")
        op_token = accounts.new_token(conn, found[0].id, "stolen")
    c = env.client_for("operator")
    with c.websocket_connect(f"/terminal/ws?ticket={env.ticket(c)}", headers=ORIGIN) as ws:
        ready = read_control(ws, "ready")
        ws.send_bytes(b"echo typed-MARKER-7d1; echo shown-$((6*7))-MARKER\n")
        read_until(ws, b"shown-42-MARKER")
        ws.send_text('{"t": "x"}')
        assert read_control(ws, "end")["reason"] == "user"
    sid = ready["session"]
    for path in (f"/terminal/sessions/{sid}", f"/terminal/sessions/{sid}/cast", "/terminal"):
        assert c.get(path).status_code == 403, path
        assert env.client_for("viewer").get(path).status_code == 403, path
        for token in (viewer_token, op_token):
            r = env.client.get(path, headers=bearer(token))
            assert r.status_code == 403, (path, r.status_code)
    assert not env.audit("terminal.replay")
    admin = env.client_for("admin")
    cast = admin.get(f"/terminal/sessions/{sid}/cast")
    assert cast.status_code == 200 and "shown-42-MARKER" in cast.text
    env.svc.engine.dispose()
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").rglob("*") if p.is_file())
    assert b"MARKER" not in raw and b"typed-" not in raw
