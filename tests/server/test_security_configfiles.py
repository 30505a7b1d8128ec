"""Every config file obeys one loader's rules: includes stay below their file, only regular files, size counted
while reading, nesting limited with file:line, and messages that never echo a file's contents."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from server.actions.catalog import load_catalog
from server.alerts.rules import load_rules
from server.config.loader import load_config
from server.config.yamlsrc import MAX_CONFIG_BYTES, ConfigError, load_yaml
from server.notify.config import load_notify_config
from tests.server.conftest import run_cli

NOT_REGULAR = "/dev/zero: not a regular file (a device, pipe or socket); a config file must be a plain file"
SECRETS = ("hunter2-Zq81-secret", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "root:$y$j9T$Qx")
SECRET_FILE = (
    "devices: []\n"
    "db_password: hunter2-Zq81-secret\n"
    "AKIAIOSFODNN7EXAMPLE: wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"
    "root:$y$j9T$Qx: 19000\n"
)
LOADERS: dict[str, Callable[[Path], object]] = {
    "config": load_config,
    "rules": load_rules,
    "actions": load_catalog,
    "channels": load_notify_config,
}


def problems_of(load: Callable[[Path], object], path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(path)
    return caught.value.problems


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["../outside.yaml", "/etc/passwd", "sub/../../outside.yaml", "link.yaml"])
def test_an_include_outside_the_including_files_directory_is_refused(tmp_path: Path, name: str) -> None:
    write(tmp_path / "outside.yaml", SECRET_FILE)
    main = write(tmp_path / "conf" / "main.yaml", f"devices: []\ninclude:\n  - inv.yaml\n  - {name!r}\n")
    write(tmp_path / "conf" / "inv.yaml", "devices: [{name: a, address: 192.0.2.1}]\n")
    (tmp_path / "conf" / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    [problem] = problems_of(load_config, main)
    assert problem.startswith(f"{main}:4: include ") and "is outside" in problem
    assert not any(secret in problem for secret in SECRETS)


def test_includes_below_the_directory_still_work(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "include: [sites/a.yaml, ./b.yaml]\n")
    write(tmp_path / "sites" / "a.yaml", "devices: [{name: a, address: 192.0.2.1}]\n")
    write(tmp_path / "b.yaml", "devices: [{name: b, address: 192.0.2.2}]\n")
    assert [d.name for d in load_config(main).devices] == ["a", "b"]


def test_check_config_never_echoes_the_lines_of_a_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "include: [leaky.yaml]\nsettings:\n  rules_file: leaky.yaml\n")
    write(tmp_path / "leaky.yaml", SECRET_FILE)
    result = run_cli("check-config", main, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "unknown key 'db_password'" in result.stderr, "a key that looks like a key is still named"
    for secret in SECRETS:
        assert secret not in result.stderr + result.stdout, f"check-config echoed {secret!r}"


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_device_is_not_a_config_file_and_is_not_read(tmp_path: Path, kind: str) -> None:
    start = time.monotonic()
    [problem] = problems_of(LOADERS[kind], Path("/dev/zero"))
    assert problem == NOT_REGULAR
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    [problem] = problems_of(LOADERS[kind], fifo)  # opening a FIFO with no writer must not hang
    assert "not a regular file" in problem
    assert time.monotonic() - start < 5


def test_a_file_named_in_settings_is_held_to_the_same_rules(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "settings:\n  actions_file: /dev/zero\n")
    assert problems_of(load_config, main) == [NOT_REGULAR]


def test_the_size_limit_is_counted_while_reading(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    assert problems_of(load_rules, big) == [f"{big}: file is larger than 8 MB"]


@pytest.mark.parametrize("style", ["flow", "block"])
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_yaml_nested_20000_deep_is_a_file_line_error_not_a_traceback(tmp_path: Path, kind: str, style: str) -> None:
    deep = "[" * 20000 + "]" * 20000 if style == "flow" else "- " * 20000 + "x"
    path = write(tmp_path / f"{kind}.yaml", f"# nested\nkey:\n  {deep}\n")
    [problem] = problems_of(LOADERS[kind], path)
    assert problem == f"{path}:3: nested deeper than 64 levels"


BILLION_LAUGHS = "devices: []\nlol: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_billion_laughs_is_refused_at_file_line_not_expanded(tmp_path: Path, kind: str) -> None:
    path = write(tmp_path / f"{kind}.yaml", BILLION_LAUGHS)
    started = time.monotonic()
    [problem] = problems_of(LOADERS[kind], path)
    assert problem == f"{path}:7: aliases expand this value to more than 100000 values"  # f: 9**5 * 10 values
    assert time.monotonic() - started < 5


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = write(tmp_path / "rules.yaml", "x: &x [1, 2]\ny: *x\nz: [*x, *x]\n")
    assert load_yaml(path) == {"x": [1, 2], "y": [1, 2], "z": [[1, 2], [1, 2]]}


def test_check_config_reports_deep_nesting_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "devices:\n" + "  " + "[" * 20000 + "]" * 20000 + "\n")
    result = run_cli("check-config", path, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"{path}:2: nested deeper than 64 levels"
