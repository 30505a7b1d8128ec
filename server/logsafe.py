"""Text logs that cannot be forged: control characters in logged values (a user name with a newline) are escaped."""

from __future__ import annotations

import logging
import re

# C0/C1 controls, DEL, and Unicode line/paragraph separators: anything that could start a fake log line or
# move a terminal's cursor.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: object, limit: int = 4096) -> str:
    """One printable line: newlines become \\n, other controls \\xNN (or \\uNNNN), long values are cut."""
    value = str(text)
    if len(value) > limit:
        value = value[:limit] + "…"
    return _UNSAFE.sub(_replacement, value)


def _replacement(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}")


class SafeFormatter(logging.Formatter):
    """A formatter whose message part is always one line (tracebacks, added after, keep their lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        """Escape the rendered message before it is put into the format."""
        record.message = escape(record.message, limit=16384)
        return super().formatMessage(record)


def install(fmt: str | None = None) -> None:
    """Give every handler of the root logger the escaping formatter (keeping its format string)."""
    for handler in logging.getLogger().handlers:
        current = handler.formatter
        pattern = fmt or (current._fmt if current is not None else None)
        handler.setFormatter(SafeFormatter(pattern, current.datefmt if current is not None else None))
