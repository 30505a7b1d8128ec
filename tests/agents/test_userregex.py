"""User regular expressions: RE2's linear time, and clear words for what it refuses."""

from __future__ import annotations

import time

import pytest

from agents.userregex import RegexError, cached_user_regex, compile_user_regex, inline_flags


def test_nested_quantifiers_answer_in_linear_time() -> None:
    regex = compile_user_regex(r"^(a+)+$")
    start = time.monotonic()
    assert not regex.search("a" * 28 + "!")
    assert not regex.search("a" * 1_000_000 + "!")
    assert time.monotonic() - start < 1.0
    assert regex.fullmatch("aaaa") and regex.groups == 1


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("(?=a)a", "a lookahead (?=…)"),
        ("(?!a)b", "a negative lookahead (?!…)"),
        ("(?<=a)b", "a lookbehind (?<=…)"),
        ("(?<!a)b", "a negative lookbehind (?<!…)"),
        ("(?P<x>a)(?P=x)", "a backreference"),
        (r"(?P<x>a)\k<x>", "a backreference"),
        ("(?>a)", "an atomic group"),
        (r"(a)\1", "a backreference \\1"),
        ("a*+", "a possessive quantifier"),
    ],
)
def test_backtracking_features_are_named_in_the_refusal(pattern: str, words: str) -> None:
    with pytest.raises(RegexError) as caught:
        compile_user_regex(pattern)
    assert words in str(caught.value) and "RE2" in str(caught.value)


def test_other_refusals_say_what_is_wrong() -> None:
    for pattern, words in (("(", "not a valid regular expression"), ("x" * 2000, "longer than 1024"), ("a{2000}", "repetition")):
        with pytest.raises(RegexError, match=words):
            compile_user_regex(pattern)


def test_groups_and_inline_flags() -> None:
    assert cached_user_regex(r"q=(\d+)").first_group("x q=42 y") == "42"
    assert compile_user_regex("(?i)OK").search("ok")
    assert inline_flags("(?im)^a$") == {"i", "m"}
    assert inline_flags(r"\(?m)[(?s)]x(?P<n>a)(?s:b)") == {"s"}


def test_text_that_is_not_utf8_encodable_is_matched_not_raised() -> None:
    """JSON lets a client send a lone surrogate; matching it must answer, not crash the request."""
    assert not compile_user_regex("[a-z]+").fullmatch("ab\ud800")
    assert compile_user_regex("ab").search("ab\ud800")
