"""The action catalog: every problem reported as file:line at start and by check-config; templates; docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from server.actions.catalog import ActionSpec, AppliesTo, ParamSpec, SnmpStep, Varbind, VerifySpec, load_catalog
from server.actions.params import ParamError, check_params, shown
from server.actions.plan import build_plan
from server.actions.targets import Choice
from server.actions.template import placeholders, render
from server.config.settings import Settings
from server.config.yamlsrc import ConfigError
from server.web.app import create_app
from tests.server.conftest import bearer, make_app_env, run_cli

REPO = Path(__file__).resolve().parents[2]
# An action with one parameter x; its spec follows.
P = "actions:\n  - id: a\n    title: A\n    ssh: 'echo {x}'\n    params:\n      - "
EXAMPLE = REPO / "config" / "actions.example.yaml"


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "actions.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_catalog(path)
    return caught.value.problems


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("actions:\n  - id: a\n    title: A\n", 2, "exactly one of ssh"),
        ("actions:\n  - id: a\n    title: A\n    ssh: 'true'\n    snmp: [{wait: 1}]\n", 2, "exactly one of ssh"),
        ("actions:\n  - id: a\n    title: A\n    ssh: 'echo {x}'\n", 2, "uses x: not declared"),
        ("actions:\n  - id: a\n    title: A\n    ssh: 'echo {x.__class__}'\n", 2, "is not allowed"),
        (
            "actions:\n  - id: a\n    title: A\n    ssh: 'echo {x!r}'\n    params: [{name: x, type: enum, choices: [a]}]\n",
            2,
            "not allowed",
        ),
        ("actions:\n  - id: a\n    title: A\n    ssh: 'echo {'\n", 2, "bad placeholder"),
        (
            "actions:\n  - id: a\n    title: A\n    ssh: 'true'\n    params: [{name: x, type: enum, choices: [a]}]\n",
            2,
            "declared but not used",
        ),
        (
            P + "{name: x, type: string}\n",
            6,
            "needs pattern",
        ),
        (
            P + "{name: x, type: string, pattern: '(?m)^a$'}\n",
            6,
            "(?m)",
        ),
        (
            P + "{name: x, type: string, pattern: '[a'}\n",
            6,
            "not a valid regular",
        ),
        (
            P + "{name: x, type: integer, min: 5}\n",
            6,
            "needs max",
        ),
        (
            P + "{name: x, type: integer, min: 5, max: 1}\n",
            6,
            "min is above max",
        ),
        (
            P + "{name: x, type: enum, choices: ['a;b']}\n",
            6,
            "choices.0",
        ),
        (
            P + "{name: x, type: enum, choices: [a], default: b}\n",
            6,
            "default",
        ),
        ("actions:\n  - id: a\n    title: A\n    role: viewer\n    ssh: 'true'\n", 4, "viewers never run actions"),
        ("actions:\n  - id: a\n    title: A\n    danger: extreme\n    ssh: 'true'\n", 4, "danger"),
        ("actions:\n  - id: a\n    title: A\n    ssh: 'true'\n    shell: bash\n", 5, "unknown key"),
        ('actions:\n  - id: a\n    title: A\n    ssh: "a\\nb"\n', 4, "one line"),
        ("actions:\n  - id: Bad Id\n    title: A\n    ssh: 'true'\n", 2, "id"),
        ("actions:\n  - id: a\n    title: A\n    timeout: 0\n    ssh: 'true'\n", 4, "timeout"),
        (
            "actions:\n  - id: a\n    title: A\n    snmp: [{set: {oid: '1.3.6.{x}', type: integer, value: 1}}]\n    params:\n"
            "      - {name: x, type: string, pattern: '[0-9]+'}\n",
            2,
            "must be an integer",
        ),
        (
            "actions:\n  - id: a\n    title: A\n    snmp: [{set: {oid: '1.3', type: integer, value: abc}}]\n",
            4,
            "number or a single",
        ),
        (
            "actions:\n  - id: a\n    title: A\n    snmp: [{wait: 1, set: {oid: '1.3', type: integer, value: 1}}]\n",
            4,
            "either set",
        ),
        ("actions:\n  - id: a\n    title: A\n    snmp: [{wait: 1}]\n    verify: {ssh: 'true'}\n", 2, "needs an SSH action"),
        (
            "actions:\n  - {id: a, title: A, ssh: 'true'}\n  - {id: a, title: B, ssh: 'true'}\n",
            3,
            "duplicate action id 'a' (first at line 2)",
        ),
        ("- just a list\n", 1, "mapping with 'actions:'"),
        ("actions:\n  - id: a\n   title: A\n", 3, ""),
    ],
)
def test_catalog_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    problems = _problems(tmp_path, text)
    assert any(p.startswith(f"{tmp_path / 'actions.yaml'}:{line}:") and fragment in p for p in problems), problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = (
        "actions:\n  - {id: a, title: A}\n  - {id: b, title: B, ssh: 'true', role: viewer}\n  - {id: c, title: C, ssh: 'x {y}'}\n"
    )
    problems = _problems(tmp_path, text)
    assert [p.split(":")[1] for p in problems] == ["2", "3", "4"], problems


def test_the_example_catalog_is_valid_and_useful() -> None:
    catalog = load_catalog(EXAMPLE)
    ids = set(catalog.actions)
    for wanted in ("restart-service", "clear-temp", "reload-nginx", "show-top", "journal-tail", "reboot", "port-bounce",
                   "port-disable", "port-enable", "clear-print-queue"):  # fmt: skip
        assert wanted in ids
    assert catalog.actions["reboot"].dangerous and catalog.actions["port-disable"].dangerous
    bounce = catalog.actions["port-bounce"]
    assert bounce.params[0].type == "interface" and bounce.verify.hold_seconds == 120  # chosen by name; must hold 2 min
    ports = {"ifindex": [Choice(7, "Gi1/0/7", "down", "desk 7")]}
    with pytest.raises(ParamError, match="no interface of the device is known yet"):
        check_params(bounce, {"ifindex": 7})  # never polled: no number is taken on trust
    with pytest.raises(ParamError, match="the device has no interface 8"):
        check_params(bounce, {"ifindex": 8}, ports)
    values = check_params(bounce, {"ifindex": "Gi1/0/7"}, ports)
    plan = build_plan(bounce, values, {"ifindex": ports["ifindex"][0]})
    assert plan.text == (
        "SET 1.3.6.1.2.1.2.2.1.7.7 INTEGER 2  (Gi1/0/7: admin status → down)\nwait 5 s\n"
        "SET 1.3.6.1.2.1.2.2.1.7.7 INTEGER 1  (Gi1/0/7: admin status → up)"
    )
    journal = catalog.actions["journal-tail"]
    assert build_plan(journal, check_params(journal, {"unit": "nginx.service"})).text.endswith("-n 50 -u nginx.service")


@pytest.mark.parametrize(
    ("hold", "polls", "seconds"),
    [("2 polls", 2, 0), ("1 poll", 1, 0), ("120s", 1, 120), ("2 min", 1, 120), (90, 1, 90), ("3 checks", 3, 0)],
)
def test_hold_is_written_in_words(hold: object, polls: int, seconds: float) -> None:
    spec = VerifySpec.model_validate({"hold": hold})
    assert (spec.hold_polls, spec.hold_seconds) == (polls, seconds)


def test_a_bad_hold_and_a_thing_with_a_default_are_refused(tmp_path: Path) -> None:
    text = (
        "actions:\n"
        "  - {id: a, title: A, ssh: 'true', verify: {hold: soon}}\n"
        "  - {id: b, title: B, ssh: 'echo {unit}', params: [{name: unit, type: service, default: nginx}]}\n"
        "  - {id: c, title: C, ssh: 'echo {fs}', params: [{name: fs, type: filesystem, min: 1}]}\n"
    )
    problems = _problems(tmp_path, text)
    assert any(":2:" in p and "hold 'soon'" in p for p in problems), problems
    assert any(":3:" in p and "no default" in p for p in problems), problems
    assert any(":4:" in p and "takes no min" in p for p in problems), problems


def test_templates_quote_every_value() -> None:
    assert placeholders("a {x} {{literal}} {y}") == ["x", "y"]
    assert render("echo {x} {{ok}}", {"x": "a'b; c"}, quote=True) == "echo 'a'\"'\"'b; c' {ok}"
    for bad in ("{0}", "{}", "{x[0]}", "{x:>10}", "{X}"):
        with pytest.raises(ValueError):
            placeholders(bad)


def test_parameter_messages_show_hostile_values_safely() -> None:
    assert shown("a\x1b[2Jb") == "'a\\x1b[2Jb'" and shown("x" * 100).endswith("… (100 characters)")
    spec = ActionSpec.model_validate(
        {"id": "a", "title": "A", "ssh": "echo {n}", "params": [{"name": "n", "type": "string", "pattern": "[^/]+"}]}
    )
    # A careless pattern ([^/]+ matches newlines) still cannot let a newline, NUL or option through.
    for value, why in (("a\nb", "control"), ("-rf", "'-'"), ("a\x00", "control"), ("\u202eevil", "control")):
        with pytest.raises(ParamError, match=why):
            check_params(spec, {"n": value})


def test_a_bad_catalog_stops_the_start_and_check_config(tmp_path: Path) -> None:
    (tmp_path / "actions.yaml").write_text("actions:\n  - id: a\n    title: A\n    ssh: 'echo {nope}'\n")
    app = create_app(Settings(data_dir=tmp_path / "data", actions_file=tmp_path / "actions.yaml"), poll=False)
    with pytest.raises(ConfigError, match=r"actions.yaml:2: .*nope"), TestClient(app):
        pass
    config = tmp_path / "pocketnoc.yaml"
    config.write_text("settings:\n  actions_file: actions.yaml\n")
    result = run_cli("check-config", config, cwd=tmp_path)
    assert result.returncode == 2 and f"{tmp_path / 'actions.yaml'}:2: " in result.stderr and "nope" in result.stderr
    assert "Traceback" not in result.stderr


def test_reload_keeps_the_catalog_on_errors(tmp_path: Path) -> None:
    path = tmp_path / "actions.yaml"
    path.write_text("actions:\n  - {id: a, title: A, ssh: 'true'}\n")
    for env in make_app_env(Settings(data_dir=tmp_path / "data", actions_file=path)):
        token = env.token("root", "admin")
        assert [a["id"] for a in env.client.get("/api/v1/actions", headers=bearer(token)).json()["items"]] == ["a"]
        path.write_text("actions:\n  - {id: a, title: A, ssh: 'true'}\n  - {id: b, title: B}\n")
        r = env.client.post("/api/v1/actions/reload", headers=bearer(token))
        assert r.status_code == 422 and ":3:" in r.json()["detail"]["errors"][0]
        assert len(env.client.get("/api/v1/actions", headers=bearer(token)).json()["items"]) == 1
        path.write_text("actions:\n  - {id: a, title: A, ssh: 'true'}\n  - {id: b, title: B, ssh: 'true'}\n")
        assert env.client.post("/api/v1/actions/reload", headers=bearer(token)).json() == {"actions": 2}
        operator = env.token("op", "operator")
        assert env.client.post("/api/v1/actions/reload", headers=bearer(operator)).status_code == 403
        assert env.client.get("/api/v1/actions/nope", headers=bearer(operator)).status_code == 404
        paths = env.client.get("/api/v1/openapi.json").json()["paths"]
        body = paths["/api/v1/actions/{action_id}/run"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert body["additionalProperties"] is False and set(body["properties"]) >= {"device", "params", "reason"}


def _fields(*models: type[BaseModel]) -> set[str]:
    return {name for model in models for name in model.model_fields}


def test_every_catalog_field_is_documented() -> None:
    example = EXAMPLE.read_text()
    readme = (REPO / "README.md").read_text()
    fields = _fields(ActionSpec, ParamSpec, AppliesTo, Varbind, SnmpStep, VerifySpec)
    for name in sorted(fields):
        assert re.search(rf"\b{name}\b", example), f"{name} is not explained in config/actions.example.yaml"
        assert re.search(rf"\b{name}\b", readme), f"{name} is not in the README's action catalog section"
    assert "actions_file" in readme
