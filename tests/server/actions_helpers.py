"""Helpers for the action tests: an app with polling and a catalog, a real sshd, a scratch dir the test account owns."""

from __future__ import annotations

import functools
import os
import pwd
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from server.config.settings import Settings
from server.runtime import Services
from server.store import accounts
from server.web.app import create_app
from tests.peers.sshd import SshdPeer
from tests.server.conftest import PASSWORD, bearer

HOME = Path("/var/lib/pnoc-test")  # the sshd peer's test account (tests/peers/sshd.py)
RUN_TIMEOUT = 90.0
# The catalog of tests/server/test_actions_ssh*.py: one action per effect, cap, kill and refusal they check.
SSH_CATALOG = """
actions:
  - id: touch-file
    title: Create a file
    applies_to: {kinds: [linux]}
    danger: low
    params:
      - {name: name, type: string, pattern: "[a-z0-9._-]{1,32}"}
    ssh: "cd {base} && touch {name} && ls"
    verify: false
  - id: remove-file
    title: Remove a file
    applies_to: {kinds: [linux]}
    params:
      - {name: name, type: enum, choices: [a.txt, b.txt]}
    ssh: "rm -v {base}/{name}"
    verify: false
  - id: clear-temp
    title: Clear the temp dir
    applies_to: {kinds: [linux]}
    ssh: "find {base}/tmp -mindepth 1 -delete; ls -A {base}/tmp | wc -l"
    verify: false
  - id: echo-text
    title: Echo text
    danger: low
    params:
      - {name: text, type: string, pattern: "[ -~]{1,200}", max_length: 200}
    ssh: "printf '%s\\\\n' {text}; printf 'err line\\\\n' >&2"
    verify: false
  - id: lines
    title: Show lines
    danger: low
    concurrent: true
    params:
      - {name: count, type: integer, min: 1, max: 500, default: 50}
    ssh: "seq 1 {count}"
    verify: false
  - id: never-ends
    title: Never ends
    timeout: 2
    ssh: "sleep 987.{marker}; echo never"
    params:
      - {name: marker, type: integer, min: 1, max: 999999}
    verify: false
  - id: prints-forever
    title: Prints forever
    max_output: 4096
    ssh: "yes pocketnoc-flood"
    verify: false
  - id: hostile-output
    title: Hostile output
    danger: low
    ssh: 'printf "\\033[31mred\\033[0m <b>bold</b> \\033]0;t\\007 bell\\007 cr\\rover\\n\\377\\376 not utf8\\n"'
    verify: false
  - id: slow
    title: Slow
    timeout: 60
    ssh: "while [ ! -e {base}/release ]; do sleep 0.05; done; echo slow-done"
    verify: false
  - id: wipe-box
    title: Wipe (simulated)
    role: admin
    danger: high
    ssh: "echo wiped > {base}/wiped"
    verify: false
  - id: switch-only
    title: Switch only
    applies_to: {kinds: [switch]}
    ssh: "true"
    verify: false
  - id: web-tagged
    title: Web only
    applies_to: {tags: [web]}
    ssh: "true"
    verify: false
"""


@dataclass
class ActionEnv:
    """An app with polling on, its client, admin/operator/viewer tokens and the scratch dir runs act on."""

    client: TestClient
    svc: Services
    tokens: dict[str, str]
    scratch: Path

    def headers(self, role: str = "operator") -> dict[str, str]:
        return bearer(self.tokens[role])

    def user(self, name: str, role: str) -> str:
        """A new user (password PASSWORD) with a bearer token; returns the token."""
        with self.svc.engine.begin() as conn:
            user_id = accounts.insert_user(conn, name, password_hash(), role)
            token = accounts.new_token(conn, user_id, "test")
        self.tokens[name] = token
        return token

    def add_device(self, spec: dict[str, Any]) -> int:
        r = self.client.post("/api/v1/devices", json=spec, headers=self.headers("admin"))
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def run(self, action: str, device: int, role: str = "operator", **body: Any) -> Any:
        """POST a run; returns the response."""
        return self.client.post(f"/api/v1/actions/{action}/run", json={"device": device, **body}, headers=self.headers(role))

    def wait(self, run_id: int, timeout: float = RUN_TIMEOUT) -> dict[str, Any]:
        """The run once it ran and was verified."""
        deadline = time.monotonic() + timeout
        while True:
            data: dict[str, Any] = self.client.get(f"/api/v1/runs/{run_id}", headers=self.headers()).json()
            if data.get("finished") or time.monotonic() > deadline:
                assert data.get("finished"), data
                return data
            time.sleep(0.1)

    def audit(self, action: str) -> list[dict[str, Any]]:
        with self.svc.reader.connect() as conn:
            return [e for e in accounts.read_audit(conn, 1000) if e["action"] == action]


@functools.cache
def password_hash() -> str:
    """PASSWORD hashed once per test process (argon2 is slow on purpose)."""
    from server.auth.passwords import hash_password

    return hash_password(PASSWORD)


def scratch_dir() -> Path:
    """A fresh directory owned by the test account (runs really create and delete files there)."""
    entry = pwd.getpwnam("pnoc-test")
    path = HOME / f"act-{secrets.token_hex(6)}"
    path.mkdir(mode=0o755)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def make_env(tmp_path: Path, catalog: str, poll: bool = True, **settings: Any) -> Iterator[ActionEnv]:
    """An app with the catalog text (``{base}`` replaced by a scratch dir) and admin, operator and viewer tokens."""
    from tests.peers.sshd import ensure_test_user

    ensure_test_user()
    scratch = scratch_dir()
    path = tmp_path / "actions.yaml"
    path.write_text(catalog.replace("{base}", str(scratch)))
    config = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, actions_file=path, **settings)
    app = create_app(config, poll=poll)
    try:
        with TestClient(app, follow_redirects=False) as client:
            env = ActionEnv(client, app.state.services, {}, scratch)
            for role in ("admin", "operator", "viewer"):
                env.user(role, role)
            yield env
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ssh_device(sshd: SshdPeer, name: str = "web-01", **extra: Any) -> dict[str, Any]:
    """A device spec for the sshd peer with its host key pinned."""
    ssh = {"port": sshd.port, "user": sshd.user, "key_file": sshd.key_path, "host_key": sshd.host_key_line, "timeout": 10}
    ssh.update(extra.pop("ssh", {}))
    return {"name": name, "address": "127.0.0.1", "kind": "linux", "interval": 3600, "ssh": ssh, **extra}
