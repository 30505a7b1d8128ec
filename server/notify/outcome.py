"""The result of one delivery attempt, HTTP status classification, Retry-After, and back-off with jitter."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

# 4xx answers that say "later", not "never".
TEMPORARY_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened: delivered, retry later (maybe after retry_after seconds), never (permanent), or target gone."""

    ok: bool
    status: str = ""
    detail: str = ""
    permanent: bool = False
    gone: bool = False
    retry_after: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()[:64]
    if value.isdigit():
        return float(int(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def classify_http(
    status: int, retry_after: str | None = None, detail: str = "", gone_codes: frozenset[int] = frozenset()
) -> Outcome:
    """2xx delivered; 408/425/429 and 5xx retried (honouring Retry-After); other 4xx permanent; gone_codes mean gone."""
    label = f"HTTP {status}"
    if 200 <= status < 300:
        return Outcome(True, label)
    if status in gone_codes:
        return Outcome(False, label, detail, permanent=True, gone=True)
    if status in TEMPORARY_4XX or status >= 500:
        return Outcome(False, label, detail, retry_after=parse_retry_after(retry_after))
    return Outcome(False, label, detail, permanent=True)


def backoff(attempts: int, base: float, cap: float, retry_after: float | None = None, retry_after_cap: float = 3600.0) -> float:
    """Seconds before the next try: exponential in attempts with jitter, never sooner than Retry-After asks."""
    delay = min(cap, base * 2.0 ** max(0, min(attempts - 1, 30)))
    delay *= 0.5 + random.random() / 2  # noqa: S311 - jitter, not cryptography
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_cap))
    return delay
