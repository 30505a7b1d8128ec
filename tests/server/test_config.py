"""Config loading: a valid file, includes naming their own file and line; the examples and the docs stay complete."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from server.config.inventory import (
    CheckSpec,
    CommandCheckSpec,
    DeviceSpec,
    SnmpSpec,
    SshSpec,
)
from server.config.loader import load_config
from server.config.settings import Settings
from tests.server.config_helpers import assert_reported, problems_of, write

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "config"


def test_a_valid_file_loads_with_normalised_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ok.yaml",
        "settings:\n"
        "  default_interval: 30\n"
        "devices:\n"
        "  - name: core-sw1\n"
        "    address: ' Core-SW1.Example.NET. '\n"
        "    tags: [site-b, core, core]\n"
        "    snmp: {version: 2c, community: public}\n"
        "  - name: edge\n"
        "    address: 2001:db8::1\n"
        "    parent: core-sw1\n",
    )
    config = load_config(path)
    assert config.settings == {"default_interval": 30}
    first, second = config.devices
    assert (first.name, first.address, first.tags) == ("core-sw1", "core-sw1.example.net", ["core", "site-b"])
    assert first.snmp is not None and first.snmp.community == "public"
    assert (second.address, second.parent) == ("2001:db8::1", "core-sw1")
    assert config.origins == {"core-sw1": f"{path}:4", "edge": f"{path}:8"}


def test_an_empty_file_is_an_empty_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "empty.yaml", "# nothing yet\n"))
    assert config.devices == [] and config.settings == {}


def test_no_file_means_defaults() -> None:
    config = load_config(None)
    assert config.devices == [] and config.path is None


# ---------------------------------------------------------------- includes


def test_include_of_a_missing_file_points_at_the_include(tmp_path: Path) -> None:
    path = write(tmp_path, "main.yaml", "settings: {}\ninclude:\n  - present.yaml\n  - absent.yaml\n")
    write(tmp_path, "present.yaml", "devices: []\n")
    problems = problems_of(path)
    assert_reported(problems, path, 4, "absent.yaml", "file not found")
    assert len(problems) == 1


def test_nested_includes_resolve_relative_to_their_file_and_report_their_own_lines(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: [sites/site-a.yaml]\ndevices:\n  - {name: top, address: 192.0.2.1}\n")
    site = write(
        tmp_path, "sites/site-a.yaml", "include: [racks/r1.yaml]\ndevices:\n  - {name: mid, address: 192.0.2.2, parent: top}\n"
    )
    rack = write(tmp_path, "sites/racks/r1.yaml", "devices:\n  - {name: low, address: 192.0.2.3, parent: mid}\n")
    config = load_config(main)
    assert [d.name for d in config.devices] == ["top", "mid", "low"]
    assert config.origins == {"top": f"{main}:3", "mid": f"{site.resolve()}:3", "low": f"{rack.resolve()}:2"}

    rack.write_text("devices:\n  - name: low\n    address: 192.0.2.3\n    interval: 2\n")
    assert_reported(problems_of(main), rack.resolve(), 4, "devices.0.interval")


def test_an_included_file_may_not_hold_settings(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: [inv.yaml]\n")
    inv = write(tmp_path, "inv.yaml", "devices: []\nsettings:\n  port: 1\n")
    assert_reported(problems_of(main), inv.resolve(), 2, "unknown key 'settings'")


def test_an_include_loop_ends_with_an_error(tmp_path: Path) -> None:
    main = write(tmp_path, "main.yaml", "include: [main.yaml]\n")
    assert any("nested deeper than" in p for p in problems_of(main))


def test_include_must_be_a_list_of_paths(tmp_path: Path) -> None:
    path = write(tmp_path, "main.yaml", "include: inv.yaml\n")
    assert_reported(problems_of(path), path, 1, "include must be a list")


# ---------------------------------------------------------------- examples and docs


def test_the_example_files_validate() -> None:
    config = load_config(EXAMPLES / "pocketnoc.example.yaml")
    assert [d.name for d in config.devices] == ["edge-rtr1", "core-sw1", "web-01"]
    Settings.model_validate(config.settings)
    inventory = load_config(EXAMPLES / "inventory.example.yaml")
    assert len(inventory.devices) == 3


def _field_names(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_every_setting_is_in_the_example_config() -> None:
    text = (EXAMPLES / "pocketnoc.example.yaml").read_text()
    documented = set(yaml.safe_load(text)["settings"])
    # `config` is the file itself: it is given with --config (or POCKETNOC_CONFIG), never inside the file.
    missing = _field_names(Settings) - {"config"} - documented
    assert not missing, f"settings missing from config/pocketnoc.example.yaml: {sorted(missing)}"
    assert "--config" in text
    assert not documented - _field_names(Settings), "the example has settings that do not exist"


def test_every_setting_is_in_the_readme() -> None:
    readme = REPO / "README.md"
    assert readme.exists(), "README.md is missing"
    text = readme.read_text()
    missing = sorted(name for name in _field_names(Settings) if not re.search(rf"\b{name}\b", text))
    assert not missing, f"settings not mentioned in README.md: {missing}"


def _keys(items: typing.Iterable[object]) -> set[str]:
    return {key for item in items if isinstance(item, dict) for key in item}


def test_every_inventory_field_is_in_the_example_inventory() -> None:
    devices = yaml.safe_load((EXAMPLES / "inventory.example.yaml").read_text())["devices"]
    snmp = [d["snmp"] for d in devices if d.get("snmp")]
    ssh = [d["ssh"] for d in devices if d.get("ssh")]
    commands = [c for s in ssh for c in s.get("commands") or []]
    checks = [c for d in devices for c in d.get("checks") or []]
    shown: dict[type[BaseModel], set[str]] = {
        DeviceSpec: _keys(devices),
        SnmpSpec: _keys(snmp),
        SshSpec: _keys(ssh),
        CommandCheckSpec: _keys(commands),
        CheckSpec: _keys(checks),
    }
    for model, keys in shown.items():
        missing = _field_names(model) - keys
        assert not missing, f"{model.__name__} fields missing from config/inventory.example.yaml: {sorted(missing)}"


def test_an_http_check_url_with_control_characters_is_refused_when_it_is_given() -> None:
    """The poller refuses such a URL; so does the inventory, at once, instead of a device that is then always down."""
    from pydantic import ValidationError

    from server.config.inventory import DeviceSpec

    with pytest.raises(ValidationError, match="control characters"):
        DeviceSpec.model_validate({"name": "web", "address": "127.0.0.1",
                                   "checks": [{"type": "http", "url": "http://127.0.0.1/\x1b[2J"}]})
