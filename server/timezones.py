"""Validation shared by every weekly window (maintenance silences, notification routes and quiet hours)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def check_days(value: list[int]) -> list[int]:
    """Weekdays 0 (Monday) to 6 (Sunday), sorted and unique."""
    if any(d < 0 or d > 6 for d in value):
        raise ValueError("days are 0 (Monday) to 6 (Sunday)")
    return sorted(set(value))


def check_tz(value: str) -> str:
    """A time zone name the system knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value
