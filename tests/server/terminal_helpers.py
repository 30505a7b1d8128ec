"""Helpers for the terminal tests: an app with a device on the real sshd, signed-in clients, tickets, socket reading."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession

from server.config.settings import Settings
from server.runtime import Services
from server.services.terminal.manager import manager
from server.store import accounts
from server.store import terminal as store
from server.web.app import create_app
from tests.peers.sshd import SshdPeer, ensure_test_user
from tests.server.actions_helpers import password_hash, ssh_device
from tests.server.conftest import bearer, form_csrf, sign_in

TICKET = re.compile(r'data-ticket="([^"]+)"')
ORIGIN = {"origin": "http://testserver"}


class Clock:
    """The terminal manager's clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class TermEnv:
    """An app on a temp dir with a device `web-01` on the sshd peer, and users admin, operator, viewer."""

    client: TestClient
    svc: Services
    device: int
    admin_token: str

    def user(self, name: str, role: str) -> None:
        with self.svc.engine.begin() as conn:
            accounts.insert_user(conn, name, password_hash(), role)

    def client_for(self, name: str) -> TestClient:
        """A new client on the same app, signed in as `name` through the form."""
        c = TestClient(self.client.app, follow_redirects=False)
        c.portal = self.client.portal  # one event loop for every client, as under uvicorn (sessions outlive a socket)
        sign_in(c, name)
        return c

    def ticket(self, c: TestClient, reason: str = "checking the disk", device: int | None = None) -> str:
        """Open the terminal form and submit it; returns the one-time ticket on the terminal page."""
        device = device or self.device
        page = c.get(f"/devices/{device}/terminal")
        assert page.status_code == 200, page.text
        r = c.post(f"/devices/{device}/terminal", data={"csrf_token": form_csrf(page.text), "reason": reason})
        assert r.status_code == 200, r.text
        found = TICKET.search(r.text)
        assert found, r.text
        return found.group(1)

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.svc.reader.connect() as conn:
            return [e for e in accounts.read_audit(conn, 1000) if e["action"] == action]

    def recording(self, session_id: int) -> list[Any]:
        """The recording's lines, parsed (every line must be valid JSON)."""
        with self.svc.reader.connect() as conn:
            text = "".join(store.recording(conn, self.svc.box, session_id))
        return [json.loads(line) for line in text.split("\n") if line]

    @property
    def terminals(self) -> Any:
        return manager(self.svc)


def make_term_env(tmp_path: Path, sshd: SshdPeer, **settings: Any) -> Iterator[TermEnv]:
    """The app (no polling), the device on the sshd peer with its host key pinned, and the three users."""
    ensure_test_user()
    app = create_app(Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, **settings), poll=False)
    with TestClient(app, follow_redirects=False) as client:
        svc: Services = app.state.services
        with svc.engine.begin() as conn:
            admin_id = accounts.insert_user(conn, "admin", password_hash(), "admin")
            token = accounts.new_token(conn, admin_id, "test")
        r = client.post("/api/v1/devices", json=ssh_device(sshd), headers=bearer(token))
        assert r.status_code == 201, r.text
        env = TermEnv(client, svc, int(r.json()["id"]), token)
        env.user("operator", "operator")
        env.user("viewer", "viewer")
        yield env


def read_until(ws: WebSocketTestSession, needle: bytes, limit: int = 2000) -> tuple[bytes, list[dict[str, Any]]]:
    """Output until `needle` appears (and the control messages seen meanwhile)."""
    out, controls = b"", []
    for _ in range(limit):
        message = ws.receive()
        if message.get("bytes"):
            out += message["bytes"]
            if needle in out:
                return out, controls
        elif message.get("text"):
            controls.append(json.loads(message["text"]))
            if controls[-1]["t"] in ("end", "error"):
                break
        elif message["type"] == "websocket.close":
            break
    raise AssertionError(f"{needle!r} not seen; output {out[-500:]!r}, controls {controls}")


def read_control(ws: WebSocketTestSession, kind: str, limit: int = 5000) -> dict[str, Any]:
    """Skip output until a control message of `kind` (ready, end, error)."""
    for _ in range(limit):
        message = ws.receive()
        if message.get("text"):
            data: dict[str, Any] = json.loads(message["text"])
            if data["t"] == kind:
                return data
            if data["t"] in ("end", "error"):
                raise AssertionError(f"wanted {kind}, got {data}")
        elif message["type"] == "websocket.close":
            raise AssertionError(f"closed before {kind}: {message}")
    raise AssertionError(f"no {kind} message")
