"""Secrets in motion: never in API answers, exports, logs or the raw database; the command line takes no secrets
as arguments."""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from server.cli.main import build_parser
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.store.db import make_engine
from server.store.devices import load_devices
from server.web.app import create_app
from tests.peers.snmpd import SnmpdPeer, V3User, start_snmpd
from tests.server.conftest import AppEnv, bearer, sign_in
from tests.server.security_helpers import (
    AUTH_KEY,
    COMMUNITY,
    PRIV_KEY,
    SSH_PASSWORD,
    TotpClock,
    assert_absent,
    closed_tcp_port,
    enrol_totp,
    secret_devices,
)


@pytest.fixture
def snmp_peer(tmp_path: Path) -> Iterator[SnmpdPeer]:
    """snmpd answering our secret community and a v3 user with secret keys."""
    peer = start_snmpd(tmp_path, community=COMMUNITY, users=(V3User("secmon", "SHA", AUTH_KEY, "AES", PRIV_KEY),))
    yield peer
    peer.stop()


def test_device_secrets_never_leave_the_server(
    tmp_path: Path, snmp_peer: SnmpdPeer, caplog: pytest.LogCaptureFixture, clock: TotpClock
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, snmp_timeout=1.0, snmp_retries=0)
    app = create_app(settings, poll=True)
    with TestClient(app, follow_redirects=False) as client:
        env = AppEnv(app, client, app.state.services)
        token = env.token("root", "admin")
        ids = []
        for device in secret_devices(snmp_peer.port, closed_tcp_port()):
            created = client.post("/api/v1/devices", json=device, headers=bearer(token))
            assert created.status_code == 201, created.text
            assert_absent("the create answer", created.text)
            ids.append(created.json()["id"])
        for device_id in ids:
            polled = client.post(f"/api/v1/devices/{device_id}/poll", headers=bearer(token))
            assert polled.status_code in (200, 404), polled.text
        detail = client.get(f"/api/v1/devices/{ids[0]}", headers=bearer(token))
        assert detail.json()["facts"].get("sys_name"), detail.text  # the secret community really worked
        assert detail.json()["spec"]["snmp"]["community_set"] is True
        patched = client.patch(f"/api/v1/devices/{ids[1]}", json={"tags": ["x"]}, headers=bearer(token))
        assert_absent("the patch answer", patched.text)
        env.user("ops", "admin")
        sign_in(client, "ops")
        enrol_totp(client, clock)
        answers = [client.get(f"/api/v1/devices/{i}", headers=bearer(token)).text for i in ids]
        answers += [client.get(f"/devices/{i}").text for i in ids]
        for url in (
            "/api/v1/devices",
            "/api/v1/audit",
            "/api/v1/audit/export?format=csv",
            "/api/v1/audit/export?format=jsonl",
            "/metrics",
            "/api/v1/openapi.json",
            "/",
            "/admin/audit",
        ):
            answers.append(client.get(url, headers=bearer(token) if url.startswith(("/api", "/metrics")) else {}).text)
        for n, text in enumerate(answers):
            assert_absent(f"answer {n}", text)
    assert_absent("the log", caplog.text)
    raw = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("pocketnoc.db*"))
    assert_absent("the database file", raw)
    with make_engine(settings.db_url).connect() as conn:
        assert len(load_devices(conn, SecretBox.from_file(settings.key_file))) == 5
        wrong = SecretBox(Fernet.generate_key())
        with pytest.raises(Exception, match="cannot be decrypted"):
            load_devices(conn, wrong)


def test_validation_errors_do_not_echo_secrets(app_env: AppEnv) -> None:
    token = app_env.token("val", "admin")
    bad = {
        "name": "bad",
        "address": "not an address!",
        "snmp": {
            "version": "3",
            "user": "u",
            "auth_protocol": "sha",
            "auth_key": AUTH_KEY,
            "priv_key": PRIV_KEY,
            "bogus": SSH_PASSWORD,
        },
    }
    response = app_env.client.post("/api/v1/devices", json=bad, headers=bearer(token))
    assert response.status_code == 422
    assert_absent("a validation error", response.text)


def test_the_command_line_takes_no_secrets_as_arguments() -> None:
    suspicious = re.compile(r"pass|secret|key|token|community|otp|code", re.IGNORECASE)

    def walk(parser: argparse.ArgumentParser, where: str) -> Iterator[str]:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{where} {name}")
            elif action.dest != "help" and suspicious.search(action.dest + " ".join(action.option_strings)):
                yield f"{where}: {action.dest}"

    assert list(walk(build_parser(), "pocketnoc")) == []
