"""The answer to an ack, snooze or unsnooze tap: a confirmation in words and, for a few seconds, an Undo.

Without JavaScript the form's POST redirects back with `?done=ACTION&alert=ID&prev=SNOOZE_END`, and the page shows
the confirmation and an Undo form built here (the words come from the alert in the database, never from the URL).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

UNDOABLE = ("ack", "snooze", "unsnooze")
DONE_WORDS = {
    "ack": "Acknowledged",
    "unack": "Acknowledgement taken back",
    "snooze": "Snoozed",
    "unsnooze": "Snooze ended",
    "undone": "Undone",
    "note": "Note added",
}
FLASH_KEYS = ("done", "alert", "prev")


@dataclass(frozen=True, slots=True)
class Flash:
    """What the page says after a tap, and the Undo form's fields (empty when there is nothing to undo)."""

    text: str
    alert_id: int
    undo: dict[str, str] = field(default_factory=dict)
    back: str = "/"  # where Undo returns: this page without the flash parameters


def done_url(back: str, action: str, alert_id: int, prev_until: float | None) -> str:
    """`back` with the flash parameters set (older ones replaced) and the alert's row as the fragment."""
    parts = urlsplit(back)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in FLASH_KEYS]
    query += [("done", action), ("alert", str(alert_id))]
    if prev_until:
        query.append(("prev", f"{prev_until:.0f}"))
    return urlunsplit(("", "", parts.path, urlencode(query), f"alert-{alert_id}"))


def without_flash(path: str, query: list[tuple[str, str]]) -> str:
    """The page's address without the flash parameters."""
    kept = [(k, v) for k, v in query if k not in FLASH_KEYS]
    return path + (f"?{urlencode(kept)}" if kept else "")


def flash_for(
    query: Mapping[str, str], title_of: dict[int, str], now: float | None = None, back: str = "/"
) -> Flash | None:
    """The confirmation the query asks for, or None (unknown action, no such alert)."""
    action = query.get("done", "")
    raw_id = query.get("alert", "")
    if action not in DONE_WORDS or not raw_id.isdigit():
        return None
    alert_id = int(raw_id)
    title = title_of.get(alert_id)
    if title is None:
        return None
    text = f"{DONE_WORDS[action]}: {title}"
    prev = query.get("prev", "")
    if action == "snooze":
        text = f"Snoozed: {title}. Notifications for it pause until the snooze ends."
    undo: dict[str, str] = {}
    if action in UNDOABLE:
        undo = {"of": action, "until": prev if prev.isdigit() and float(prev) > (now or time.time()) else ""}
    return Flash(text, alert_id, undo, back)


def undo_minutes(until: str, now: float | None = None) -> int:
    """Minutes left of the snooze an Undo restores (0: no snooze to restore)."""
    if not until.isdigit():
        return 0
    left = float(until) - (now or time.time())
    return max(0, min(7 * 1440, round(left / 60))) if left > 0 else 0
