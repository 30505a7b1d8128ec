"""Parameter values: checked against their type, then refused if they could be read as options, paths or code."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agents.userregex import cached_user_regex
from server.actions.template import ParamValue

if TYPE_CHECKING:
    from server.actions.catalog import ActionSpec, ParamSpec
    from server.actions.targets import Choice

MAX_PARAMS = 20
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_DIGITS = re.compile(r"[+-]?[0-9]{1,18}")


class ParamError(ValueError):
    """A parameter value that is refused; the message says which and why."""


def shown(value: object, limit: int = 40) -> str:
    """A value as a short, printable quote for messages and the audit log (controls escaped)."""
    text = value if isinstance(value, str) else repr(value)
    cut = text[:limit]
    out = ascii(cut) if _CONTROL.search(cut) else repr(cut)
    return out + (f"… ({len(text)} characters)" if len(text) > limit else "")


def check_target(spec: ParamSpec, raw: object, choices: Sequence[Choice] | None) -> ParamValue:
    """The value of the thing on the device that raw names (by value or by name), or ParamError."""
    from server.actions.targets import find

    if not choices:
        raise ParamError(f"no {spec.type} of the device is known yet (poll it first)")
    found = find(choices, raw)
    if found is None:
        names = ", ".join(c.name for c in choices[:10]) + (" …" if len(choices) > 10 else "")
        said = shown(raw) if isinstance(raw, str) else str(raw)[:40]
        raise ParamError(f"the device has no {spec.type} {said} (it has {names})")
    return found.value


def check_value(spec: ParamSpec, raw: object, choices: Sequence[Choice] | None = None) -> ParamValue:
    """The validated value of one parameter, or ParamError."""
    if spec.is_target:
        return check_target(spec, raw, choices)
    if spec.type == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise ParamError("must be a whole number")
        if isinstance(raw, str):
            if not _DIGITS.fullmatch(raw.strip()):
                raise ParamError(f"must be a whole number, not {shown(raw)}")
            raw = int(raw.strip())
        low, high = spec.min, spec.max
        if (low is not None and raw < low) or (high is not None and raw > high):
            raise ParamError(f"must be between {low} and {high}")
        return raw
    if not isinstance(raw, str):
        raise ParamError("must be text")
    if spec.type == "enum":
        if raw not in (spec.choices or []):
            raise ParamError(f"{shown(raw)} is not one of the choices ({', '.join((spec.choices or [])[:10])})")
        return raw
    if len(raw) > spec.max_length:
        raise ParamError(f"is {len(raw)} characters long; at most {spec.max_length}")
    if _CONTROL.search(raw):
        raise ParamError("contains a control character (newline, NUL, escape …)")
    if not raw:
        raise ParamError("is empty")
    if raw.startswith("-"):
        raise ParamError("may not start with '-' (it would be read as an option)")
    if ".." in raw.split("/"):
        raise ParamError("may not contain a '..' path part")
    if not cached_user_regex(spec.pattern or "").fullmatch(raw):
        raise ParamError(f"{shown(raw)} does not match the allowed pattern {spec.pattern}")
    return raw


def check_params(
    action: ActionSpec, raw: Mapping[str, Any], targets: Mapping[str, Sequence[Choice]] | None = None
) -> dict[str, ParamValue]:
    """Every parameter of the action, validated (defaults filled in; things on the device from `targets`, by
    parameter name); ParamError lists every problem."""
    problems: list[str] = []
    if len(raw) > MAX_PARAMS:
        raise ParamError(f"too many parameters ({len(raw)})")
    known = {p.name: p for p in action.params}
    for name in raw:
        if name not in known:
            problems.append(f"unknown parameter {shown(name)}")
    values: dict[str, ParamValue] = {}
    for spec in action.params:
        value = raw.get(spec.name)
        if value is None or value == "":
            if spec.default is None:
                problems.append(f"{spec.name}: is required")
                continue
            value = spec.default
        try:
            values[spec.name] = check_value(spec, value, (targets or {}).get(spec.name))
        except ParamError as exc:
            problems.append(f"{spec.name}: {exc}")
    if problems:
        raise ParamError("; ".join(problems))
    return values
