"""Device text made visible, one rule everywhere: control characters become printable escapes (ESC is `\\x1b`).

Text from devices (sysDescr, sysLocation, ifAlias, trap var-binds), SSH and action output, and anything a user typed
passes `visible` where it enters the store and again where it is rendered (HTML, JSON, logs, push, e-mail): a terminal
that shows a page, an API answer or a log line is never rewritten, and the original characters stay readable as data.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar, overload

_K = TypeVar("_K")
_V = TypeVar("_V")

# C0/C1 controls, DEL, Unicode line/paragraph separators and bidi embeddings/overrides/isolates: anything that
# could start a fake log line, move a terminal's cursor or reorder what a reader sees.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_MULTILINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A control character inside json.dumps(..., ensure_ascii=False) output (\\n and \\t allowed): a cheap pre-check.
CONTROL_IN_JSON = re.compile(r"\\u00(?:0[0-8bcef]|1[0-9a-f]|7f)|\\[rbf]|[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: object, multiline: bool = False, limit: int | None = None) -> str:
    """Text with every control character as a printable escape (\\x1b, \\u202e); `multiline` keeps \\n and \\t."""
    value = str(text)
    if limit is not None and len(value) > limit:
        value = value[:limit] + "…"
    if multiline:
        value = value.replace("\r\n", "\n")
        return _UNSAFE_MULTILINE.sub(_replacement, value) if _UNSAFE_MULTILINE.search(value) else value
    return _UNSAFE.sub(_replacement, value) if _UNSAFE.search(value) else value


@overload
def visible_data(value: dict[_K, _V], multiline: bool = True) -> dict[_K, _V]: ...
@overload
def visible_data(value: object, multiline: bool = True) -> object: ...
def visible_data(value: object, multiline: bool = True) -> object:
    """`visible` applied to every string (keys included) of JSON-like data; other values are returned as they are."""
    if isinstance(value, str):
        return visible(value, multiline)
    if isinstance(value, dict):
        return {visible_data(k, False): visible_data(v, multiline) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [visible_data(v, multiline) for v in value]
    return value


def finalize(value: object) -> object:
    """Jinja's finalize hook: every plain string a template prints is made visible (Markup, already HTML, is not)."""
    return visible(value, multiline=True) if type(value) is str else value


def escape(text: object, limit: int = 4096) -> str:
    """One printable line for logs: newlines become \\n, other controls \\xNN (or \\uNNNN), long values are cut."""
    return visible(text, False, limit)


def _replacement(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}")


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is always one line (tracebacks, added after, keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Escape the rendered message before it is put into the format."""
        record.message = escape(record.message, limit=16384)
        return super().formatMessage(record)

    def formatException(self, ei: Any) -> str:
        """A traceback keeps its lines, but a device's text inside an exception message cannot reach the terminal."""
        return visible(super().formatException(ei), multiline=True)


def install(fmt: str | None = None) -> None:
    """Give every handler of the root logger the escaping formatter (keeping its format string)."""
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        pattern = fmt or (current._fmt if current is not None else None)
        handler.setFormatter(SafeFormatter(pattern, current.datefmt if current is not None else None))
