"""Option parsing and text cleaning shared by the ping, tcp and http collectors."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from agents.base import CollectError, Target

FACT_MAX_CHARS = 1024
E = TypeVar("E", bound=BaseException)
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def clean_text(value: str | bytes, limit: int = FACT_MAX_CHARS) -> str:
    """Decode device text as UTF-8 (replacing bad bytes), drop NULs and control characters, cap the length."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    return _CONTROL_RE.sub("", text[: limit * 4])[:limit]


def host_of(target: Target) -> str:
    """Return the target address without IPv6 brackets."""
    address = target.address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    if not address:
        raise CollectError("target has no address")
    return address


def opt_float(options: Mapping[str, Any], name: str, default: float, low: float, high: float) -> float:
    """Read a number option and clamp it into [low, high]."""
    raw = options.get(name, default)
    if isinstance(raw, bool):
        raise CollectError(f"option {name!r} must be a number, not {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise CollectError(f"option {name!r} must be a number, not {str(raw)[:50]!r}") from None
    if value != value:  # NaN
        raise CollectError(f"option {name!r} must be a number, not NaN")
    return min(max(value, low), high)


def opt_int(options: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    """Read an integer option and clamp it into [low, high]."""
    raw = options.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise CollectError(f"option {name!r} must be an integer, not {str(raw)[:50]!r}")
    try:
        value = int(raw)
    except ValueError:
        raise CollectError(f"option {name!r} must be an integer, not {str(raw)[:50]!r}") from None
    return min(max(value, low), high)


def opt_bool(options: Mapping[str, Any], name: str, default: bool) -> bool:
    """Read a yes/no option (bool, 0/1 or true/false/yes/no/on/off)."""
    raw = options.get(name, default)
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
        return raw.strip().lower() in ("true", "yes", "on", "1")
    raise CollectError(f"option {name!r} must be true or false, not {str(raw)[:50]!r}")


def timeout_of(target: Target) -> float:
    """Per-check timeout: option 'timeout' if set, else Target.timeout, kept within 0.05-300 s."""
    return opt_float(target.options, "timeout", target.timeout, 0.05, 300.0)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """Yield an exception and its causes/contexts, innermost last, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


def find_cause(exc: BaseException, kind: type[E]) -> E | None:
    """Return the first exception of the given kind in exc's cause/context chain."""
    return next((e for e in exception_chain(exc) if isinstance(e, kind)), None)


def os_reason(exc: BaseException) -> str | None:
    """Describe the first OSError with an errno in exc's chain ('Connection refused')."""
    for error in exception_chain(exc):
        if isinstance(error, OSError) and error.errno:
            return os.strerror(error.errno) if error.errno > 0 else error.strerror or str(error)
    return None
