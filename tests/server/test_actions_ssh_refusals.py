"""Actions over SSH refused before they run: bad parameters, stray fields, wrong device or role, unconfirmed danger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.sshd import SshdPeer
from tests.server.actions_helpers import SSH_CATALOG, ActionEnv, make_env, ssh_device


@pytest.fixture
def env(tmp_path: Path) -> Iterator[ActionEnv]:
    yield from make_env(tmp_path, SSH_CATALOG, poll=False)


@pytest.fixture
def device(env: ActionEnv, sshd: SshdPeer) -> int:
    return env.add_device(ssh_device(sshd))


BAD_VALUES = [
    ("nginx; id", "does not match"),
    ("$(id)", "does not match"),
    ("`id`", "does not match"),
    ("nginx\n; id", "control character"),
    ("../", "'..'"),
    ("..", "'..'"),
    ("-oProxyCommand=x", "start with '-'"),
    ("a\x00b", "control character"),
    ("x" * 4096, "at most 128"),
    ("", "is required"),
]


@pytest.mark.parametrize(("value", "why"), BAD_VALUES)
def test_bad_parameters_are_refused_with_a_clear_message_and_audited(env: ActionEnv, device: int, value: str, why: str) -> None:
    r = env.run("touch-file", device, params={"name": value})
    assert r.status_code == 422, r.text
    assert why in r.json()["detail"] and "name:" in r.json()["detail"]
    refused = env.audit("action.refused")
    assert len(refused) == 1 and refused[0]["username"] == "operator"
    assert refused[0]["detail"]["status"] == 422 and why in refused[0]["detail"]["why"]
    assert "\x00" not in json.dumps(refused[0]["detail"]) and len(json.dumps(refused[0]["detail"])) < 3000
    assert env.client.get("/api/v1/runs", headers=env.headers()).json()["items"] == []
    assert list(env.scratch.iterdir()) == []


def test_integer_and_enum_parameters_are_checked(env: ActionEnv, device: int) -> None:
    for params, why in [
        ({"count": 0}, "between 1 and 500"),
        ({"count": "12; id"}, "whole number"),
        ({"count": True}, "valid integer"),
        ({"count": 10**30}, "between"),
        ({"count": 5, "extra": "x"}, "unknown parameter"),
    ]:
        r = env.run("lines", device, params=params)
        assert r.status_code == 422 and why in r.json()["detail"], (params, r.text)
    r = env.run("remove-file", device, params={"name": "c.txt"})
    assert r.status_code == 422 and "not one of the choices" in r.json()["detail"]
    ok = env.wait(env.run("lines", device, params={"count": "3"}).json()["id"])
    assert ok["stdout"] == "1\n2\n3\n"
    default = env.wait(env.run("lines", device).json()["id"])
    assert default["stdout"].splitlines()[-1] == "50"


@pytest.mark.parametrize(
    ("body", "status", "why"),
    [
        ({"device": 1, "command": "id"}, 422, "command: not allowed"),
        ({"device": 1, "host": "10.0.0.1"}, 422, "host: not allowed"),
        ({"device": 1, "params": {"name": {"x": 1}}}, 422, "params.name"),
        ({"device": "one"}, 422, "device"),
        ({}, 422, "device"),
    ],
)
def test_requests_carrying_anything_but_id_and_params_are_refused(
    env: ActionEnv, device: int, body: dict[str, object], status: int, why: str
) -> None:
    r = env.client.post("/api/v1/actions/touch-file/run", json=body, headers=env.headers())
    assert r.status_code == status and why in r.json()["detail"], r.text
    assert env.audit("action.refused")[0]["detail"]["why"].startswith(why.split(":")[0])


def test_unknown_action_inapplicable_action_and_unknown_device(env: ActionEnv, device: int) -> None:
    r = env.run("rm-rf", device)
    assert r.status_code == 404 and "no action 'rm-rf'" in r.json()["detail"]
    r = env.run("switch-only", device)
    assert r.status_code == 422 and "applies to switch devices; web-01 is linux" in r.json()["detail"]
    r = env.run("web-tagged", device)
    assert r.status_code == 422 and "tagged web" in r.json()["detail"]
    r = env.run("touch-file", 999, params={"name": "a"})
    assert r.status_code == 404
    assert len(env.audit("action.refused")) == 4
    listed = env.client.get(f"/api/v1/actions?device={device}", headers=env.headers()).json()["items"]
    ids = {a["id"] for a in listed}
    assert "touch-file" in ids and "switch-only" not in ids and "web-tagged" not in ids and "wipe-box" not in ids
    assert "wipe-box" in {
        a["id"] for a in env.client.get(f"/api/v1/actions?device={device}", headers=env.headers("admin")).json()["items"]
    }


def test_a_viewer_can_read_but_never_run(env: ActionEnv, device: int) -> None:
    r = env.run("touch-file", device, role="viewer", params={"name": "v.txt"})
    assert r.status_code == 403 and "viewers cannot run actions" in r.json()["detail"]
    assert env.audit("action.refused")[0]["username"] == "viewer"
    assert env.client.get(f"/api/v1/actions?device={device}", headers=env.headers("viewer")).json()["items"] == []
    assert len(env.client.get("/api/v1/actions", headers=env.headers("viewer")).json()["items"]) > 5
    assert not (env.scratch / "v.txt").exists()


def test_a_dangerous_action_needs_the_role_the_typed_name_and_a_reason(env: ActionEnv, device: int) -> None:
    r = env.run("wipe-box", device, confirm="web-01", reason="disk is corrupt")
    assert r.status_code == 403 and "needs the admin role" in r.json()["detail"]
    r = env.run("wipe-box", device, role="admin", reason="disk is corrupt")
    assert r.status_code == 422 and "type the device name web-01" in r.json()["detail"]
    r = env.run("wipe-box", device, role="admin", confirm="web-02", reason="disk is corrupt")
    assert r.status_code == 422
    r = env.run("wipe-box", device, role="admin", confirm="web-01", reason=" \n ")
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    assert not (env.scratch / "wiped").exists()
    r = env.run("wipe-box", device, role="admin", confirm="web-01", reason="disk is\x1b[2J corrupt")
    assert r.status_code == 202, r.text
    run = env.wait(r.json()["id"])
    assert run["status"] == "succeeded" and (env.scratch / "wiped").read_text() == "wiped\n"
    assert run["reason"] == "disk is [2J corrupt"
    assert len(env.audit("action.refused")) == 4
