"""Validation shared by every weekly window (maintenance silences, notification routes and quiet hours)."""

from __future__ import annotations

from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


@cache
def zone_names() -> tuple[str, ...]:
    """Every zone name the system knows, sorted (for a list to choose from)."""
    return tuple(sorted(available_timezones() | {"UTC"}))


@cache
def _by_folded() -> dict[str, str]:
    return {name.casefold(): name for name in zone_names()}


def canonical_tz(value: str) -> str | None:
    """The zone's proper name, whatever the case it was typed in ("europe/paris" → "Europe/Paris"), or None."""
    return _by_folded().get(value.strip().casefold())


class Weekly(BaseModel):
    """The part every weekly window shares: on these weekdays (0 = Monday), in this time zone."""

    model_config = ConfigDict(extra="forbid")
    days: list[int] = Field(default_factory=lambda: list(range(7)), min_length=1, max_length=7)
    tz: str = Field(default="UTC", max_length=64)

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        return check_days(value)

    @field_validator("tz")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_tz(value)
