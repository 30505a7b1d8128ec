"""User regular expressions are RE2 everywhere: backtracking features refused in words by the API and config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.actions.catalog import load_catalog
from server.config.loader import load_config
from server.config.yamlsrc import ConfigError
from tests.server.conftest import AppEnv, bearer

LOOKAHEAD = "(?=.*ready)ok"


@pytest.mark.parametrize(
    "device",
    [
        {"checks": [{"type": "http", "url": "http://192.0.2.1/", "body_regex": LOOKAHEAD}]},
        {"ssh": {"user": "mon", "password": "pw-x", "commands": [{"name": "c", "command": "true", "regex": LOOKAHEAD}]}},
    ],
    ids=["http-body_regex", "ssh-command-regex"],
)
def test_the_api_refuses_a_lookahead_with_422_in_words(app_env: AppEnv, device: dict[str, object]) -> None:
    headers = bearer(app_env.token("ada", "admin"))
    response = app_env.client.post("/api/v1/devices", json={"name": "web1", "address": "192.0.2.1", **device}, headers=headers)
    assert response.status_code == 422, response.text
    messages = " ".join(e["msg"] for e in response.json()["detail"])
    assert "lookahead" in messages and "RE2" in messages


def test_a_pattern_that_is_not_unicode_is_a_422_not_a_500(app_env: AppEnv) -> None:
    headers = {"Content-Type": "application/json", **bearer(app_env.token("ada", "admin"))}
    check = b'{"type": "http", "url": "http://192.0.2.1/", "body_regex": "a\\ud800"}'
    body = b'{"name": "web1", "address": "192.0.2.1", "checks": [' + check + b"]}"
    response = app_env.client.post("/api/v1/devices", content=body, headers=headers)
    assert response.status_code == 422, response.text


def test_a_config_file_refuses_a_lookahead_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "pocketnoc.yaml"
    path.write_text(
        "devices:\n  - name: web1\n    address: 192.0.2.1\n    checks:\n"
        f"      - {{type: http, url: 'http://192.0.2.1/', body_regex: '{LOOKAHEAD}'}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:5: devices.0.checks.0") and "lookahead" in problem and "backtracking" in problem


def test_an_action_parameter_pattern_with_a_backreference_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text(
        "actions:\n  - id: restart\n    title: Restart\n    ssh: {command: 'systemctl restart {unit}'}\n"
        "    params:\n      - {name: unit, type: string, pattern: '(a)\\1'}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    assert any(p.startswith(f"{path}:6: ") and "backreference" in p for p in caught.value.problems), caught.value.problems
