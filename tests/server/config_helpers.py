"""Helpers for the config tests: write a file under a temp dir, and find a problem reported at its file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.config.loader import load_config
from server.config.yamlsrc import ConfigError


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems, "a ConfigError must say what is wrong"
    return caught.value.problems


def assert_reported(problems: list[str], path: Path, line: int, *fragments: str) -> None:
    """Some problem starts with 'path:line: ' and contains every fragment."""
    prefix = f"{path}:{line}: "
    for problem in problems:
        if problem.startswith(prefix) and all(f in problem for f in fragments):
            return
    pytest.fail(f"no problem at {prefix} containing {fragments!r} in:\n" + "\n".join(problems))
