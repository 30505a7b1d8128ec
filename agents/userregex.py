"""Regular expressions written by users (HTTP body_regex, SSH check regexes, action parameter patterns).

They are compiled with RE2, whose matching time is linear in the input: a pattern such as `^(a+)+$` cannot
stall a thread the way Python's backtracking `re` does. Features that need backtracking (lookaround,
backreferences, atomic groups, possessive quantifiers) do not exist in RE2 and are refused with a message
saying so, at config/API validation time.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import re2

MAX_PATTERN_CHARS = 1024
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr
_OPTIONS.max_mem = 8 << 20  # a pattern whose program needs more is refused ("too large")

# RE2's parse error (its text) -> the backtracking feature the pattern asked for, in words.
_BACKTRACKING: tuple[tuple[str, str], ...] = (
    ("invalid perl operator: (?=", "a lookahead (?=…)"),
    ("invalid perl operator: (?!", "a negative lookahead (?!…)"),
    ("invalid perl operator: (?<=", "a lookbehind (?<=…)"),
    ("invalid perl operator: (?<!", "a negative lookbehind (?<!…)"),
    ("invalid perl operator: (?>", "an atomic group (?>…)"),
    ("invalid perl operator: (?P=", "a backreference (?P=name)"),
    ("invalid perl operator: (?P", "a backreference (?P=name)"),
    ("invalid escape sequence: \\g", "a backreference \\g<…>"),
    ("invalid escape sequence: \\k", "a backreference \\k<…>"),
    ("bad repetition operator: ++", "a possessive quantifier"),
    ("bad repetition operator: *+", "a possessive quantifier"),
    ("bad repetition operator: ?+", "a possessive quantifier"),
)


class RegexError(ValueError):
    """A user pattern that RE2 cannot run; the message says why in words."""


@dataclass(frozen=True, slots=True)
class UserRegex:
    """A compiled user pattern; every match runs in time linear in the text."""

    pattern: str
    _compiled: Any  # re2._Regexp (google-re2 ships no type information)

    @property
    def groups(self) -> int:
        """How many capturing groups the pattern has."""
        return int(self._compiled.groups)

    def search(self, text: str) -> bool:
        """True when the pattern matches anywhere in `text`."""
        return self._compiled.search(_encodable(text)) is not None

    def fullmatch(self, text: str) -> bool:
        """True when the pattern matches the whole of `text`."""
        return self._compiled.fullmatch(_encodable(text)) is not None

    def first_group(self, text: str) -> str | None:
        """Group 1 of the first match anywhere in `text`, or None."""
        match = self._compiled.search(_encodable(text))
        if match is None:
            return None
        group = match.group(1)
        return group if isinstance(group, str) else None


def _encodable(text: str) -> str:
    """RE2 matches UTF-8: a lone surrogate (JSON allows "\\ud800") becomes "?" instead of an exception."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def compile_user_regex(pattern: str, *, max_chars: int = MAX_PATTERN_CHARS) -> UserRegex:
    """Compile a user's pattern with RE2; RegexError says what is wrong (or which backtracking feature it needs)."""
    if not isinstance(pattern, str):
        raise RegexError("a regular expression must be text")
    if len(pattern) > max_chars:
        raise RegexError(f"the regular expression is longer than {max_chars} characters")
    if "\x00" in pattern:
        raise RegexError("the regular expression contains a NUL character")
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except UnicodeEncodeError:
        raise RegexError("the regular expression is not valid Unicode text (a lone surrogate)") from None
    except re2.error as exc:
        reason = _reason(exc)
        backref = reason.startswith("invalid escape sequence: \\") and reason[26:27].isdigit()
        for needle, feature in (("", "a backreference \\1"),) if backref else _BACKTRACKING:
            if reason.startswith(needle):
                raise RegexError(
                    f"the regular expression uses {feature}, which needs backtracking; pocketnoc runs patterns with "
                    "RE2 (linear time, no lookaround or backreferences): rewrite it without that feature"
                ) from None
        if "pattern too large" in reason:
            raise RegexError("the regular expression is too large (its compiled program exceeds 8 MB); simplify it") from None
        raise RegexError(f"not a valid regular expression: {reason}") from None
    return UserRegex(pattern, compiled)


@functools.lru_cache(maxsize=512)
def cached_user_regex(pattern: str) -> UserRegex:
    """compile_user_regex, remembered: for patterns matched again and again (action parameters)."""
    return compile_user_regex(pattern)


def inline_flags(pattern: str) -> set[str]:
    """The letters of every inline flag group, `(?im)` or `(?s:…)`, outside escapes and character classes."""
    flags: set[str] = set()
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":  # a leading ] is a literal
                i += 1
        elif pattern.startswith("(?", i):
            j = i + 2
            while j < len(pattern) and (pattern[j].isalpha() or pattern[j] == "-"):
                j += 1
            if j < len(pattern) and pattern[j] in ":)" and pattern[i + 2 : j] and not pattern[i + 2 : j].startswith("P"):
                flags.update(pattern[i + 2 : j].split("-")[0])
        i += 1
    return flags
