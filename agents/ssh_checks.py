"""Custom command checks for the SSH collector: validated specs and a pure evaluation of each result."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from agents.ssh_parsers import OUTPUT_MAX, TEXT_MAX, clean_text
from agents.userregex import RegexError, UserRegex, compile_user_regex

CheckStatus = Literal["ok", "warning", "critical", "error"]
CHECK_OUTPUT_MAX = 64 * 1024  # what a check's regexes may look at
CHECK_TIMEOUT_MAX = 3600.0
_UNSET = object()


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What one remote command did; stdout/stderr are raw bytes, run them through clean_text to show."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    duration: float
    truncated: bool
    timed_out: bool


@dataclass(frozen=True, slots=True)
class CheckSpec:
    """One configured command check; the command string is run exactly as configured."""

    name: str
    command: str
    expect_exit: int | None = 0
    regex: UserRegex | None = None
    value_regex: UserRegex | None = None
    warn: float | None = None
    crit: float | None = None
    timeout: float = 30.0


def _number(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number")
    return float(value)


def _pattern(raw: Mapping[str, Any], key: str) -> UserRegex | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    try:
        return compile_user_regex(value)
    except RegexError as e:
        raise ValueError(f"{key}: {e}") from None


def parse_check(raw: Any, default_timeout: float) -> CheckSpec:
    """Validate one entry of options["commands"]; raises ValueError saying what is wrong."""
    if not isinstance(raw, Mapping):
        raise ValueError("a command check must be a mapping")
    name, command = raw.get("name"), raw.get("command")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name must be a non-empty string")
    if not isinstance(command, str) or not command.strip() or "\x00" in command:
        raise ValueError("command must be a non-empty string without NUL")
    expect = raw.get("expect_exit", _UNSET)
    if expect is _UNSET:
        expect = 0
    elif expect is not None and (isinstance(expect, bool) or not isinstance(expect, int)):
        raise ValueError("expect_exit must be an integer or null")
    value_regex = _pattern(raw, "value_regex")
    if value_regex is not None and value_regex.groups < 1:
        raise ValueError("value_regex needs a group around the number")
    timeout = _number(raw, "timeout")
    timeout = default_timeout if timeout is None or timeout <= 0 else min(timeout, CHECK_TIMEOUT_MAX)
    return CheckSpec(
        name=name.strip()[:TEXT_MAX],
        command=command,
        expect_exit=expect,
        regex=_pattern(raw, "regex"),
        value_regex=value_regex,
        warn=_number(raw, "warn"),
        crit=_number(raw, "crit"),
        timeout=timeout,
    )


def _threshold(value: float, warn: float | None, crit: float | None) -> CheckStatus:
    # crit below warn means lower is worse (free space, say); otherwise higher is worse.
    low_is_bad = warn is not None and crit is not None and crit < warn
    if crit is not None and (value <= crit if low_is_bad else value >= crit):
        return "critical"
    if warn is not None and (value <= warn if low_is_bad else value >= warn):
        return "warning"
    return "ok"


def _row(
    name: str, status: CheckStatus, output: str, exit_code: int | None, value: float | None, duration: float
) -> dict[str, Any]:
    return {
        "name": clean_text(name),
        "exit_code": exit_code,
        "ok": status == "ok",
        "status": status,
        "value": value,
        "output": output,
        "duration_s": round(duration, 3),
    }


def error_row(name: str, message: str, duration: float = 0.0) -> dict[str, Any]:
    """A row for a check that could not run or could not be evaluated."""
    return _row(name, "error", clean_text(message, OUTPUT_MAX), None, None, duration)


def evaluate(spec: CheckSpec, result: CommandResult) -> dict[str, Any]:
    """The table row for one check: error beats critical beats warning beats ok."""
    text = clean_text(result.stdout, CHECK_OUTPUT_MAX)
    shown = text if text.strip() else clean_text(result.stderr, OUTPUT_MAX)
    output = shown[:OUTPUT_MAX]
    value: float | None = None
    status: CheckStatus = "ok"
    problems: list[str] = []
    if result.timed_out or (result.truncated and result.exit_code is None):
        # The command was stopped, so its exit status is unknown: the check could not be evaluated.
        why = "timed out" if result.timed_out else "output too large; stopped"
        return _row(spec.name, "error", output or why, None, None, result.duration)
    # RE2's `$` is the end of the text: drop the one newline a command ends with, as Python's `$` would skip it.
    subject = text.removesuffix("\n")
    if spec.value_regex is not None:
        found = spec.value_regex.first_group(subject)
        try:
            value = float(found) if found is not None else None
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            return _row(spec.name, "error", output, result.exit_code, None, result.duration)
        status = _threshold(value, spec.warn, spec.crit)
    if spec.expect_exit is not None and result.exit_code != spec.expect_exit:
        status = "critical"
        problems.append(f"exit {result.exit_code}, expected {spec.expect_exit}")
    if spec.regex is not None and not spec.regex.search(subject):
        status = "critical"
        problems.append("output does not match")
    if problems and not output.strip():
        output = "; ".join(problems)
    return _row(spec.name, status, output, result.exit_code, value, result.duration)
