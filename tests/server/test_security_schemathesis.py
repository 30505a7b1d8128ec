"""Schemathesis against the OpenAPI spec with an admin token: generated requests to every operation, no 500s."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase

from server.config.settings import Settings
from tests import sql
from tests.server.conftest import AppEnv, bearer

EXAMPLES = 15  # per operation: bounded so the whole run stays well under a minute on two cores
BUDGET_SECONDS = 120
CATALOG = Path(__file__).resolve().parents[2] / "config" / "actions.example.yaml"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The example action catalog loaded, so the action routes are fuzzed past "no such action"."""
    return Settings(data_dir=tmp_path / "data", writer_batch_seconds=0.05, actions_file=CATALOG)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_no_generated_request_makes_a_server_error(app_env: AppEnv) -> None:
    token = app_env.token("fuzz-admin", "admin")
    headers = bearer(token)
    device = app_env.client.post("/api/v1/devices", json={"name": "fz1", "address": "192.0.2.50"}, headers=headers)
    assert device.status_code == 201
    # A Linux server whose SSH port is closed: generated runs that pass every check fail to connect, quickly.
    ssh = {"port": _closed_port(), "user": "fz", "password": "fz-password", "timeout": 2}
    linux = {"name": "fz2", "address": "127.0.0.1", "kind": "linux", "ssh": ssh}
    assert app_env.client.post("/api/v1/devices", json=linux, headers=headers).status_code == 201
    assert len(app_env.client.get("/api/v1/actions", headers=headers).json()["items"]) >= 10
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", app_env.app)
    failures: list[str] = []
    started = time.monotonic()
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            # 503: "polling is not running" in an app without a poller is an answer, not a crash.
            if response.status_code >= 500 and response.status_code != 503:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        run()
        assert time.monotonic() - started < BUDGET_SECONDS, "schemathesis run took too long"
    assert operations >= 30
    assert not failures, "\n".join(failures[:20])
    assert app_env.client.get("/api/v1/me", headers=headers).status_code == 200  # the admin was never locked out
    tried = sql.scalars(app_env.svc.reader, "SELECT action FROM audit WHERE action LIKE 'action.%'")
    assert "action.refused" in tried, "the fuzzer never got past the catalog lookup"
