"""Storm control: past `burst` alert messages per target within a window, the rest wait a moment and go out as one.

A mass outage (many alerts within seconds) then reaches each phone or channel as a few single messages and one
summary ("12 more alerts: ..."), not fifty. Alerts hidden behind a parent's outage are never sent at all.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import cached_property
from typing import Any

from server.notify.config import Delivery
from server.notify.message import SEVERITY_WORD, alert_payload, clean, dedup_key
from server.notify.passes import PassPart
from server.notify.routing import Target
from server.store.db import Connection
from server.store.notify import add_message, add_messages, open_summaries, recent_counts
from server.store.notify_records import Message, NewMessage, NotifyAlert

MAX_SUMMARY_LINES = 15


class Grouper(PassPart):
    """Creates messages for one planning pass, grouping them per target once a target has had its burst."""

    def __init__(self, conn: Connection, delivery: Delivery, now: float) -> None:
        super().__init__(conn, delivery, now)
        self._rows: list[NewMessage] = []
        self.created = 0

    @cached_property
    def _counts(self) -> dict[tuple[str, int], int]:
        """Alert messages per target within the burst window (counted on as this pass emits)."""
        return recent_counts(self.conn, self.now - self.delivery.burst_window_seconds)

    @cached_property
    def _open(self) -> dict[tuple[str, int], int]:
        """Summaries not yet taken by a sender, per target (read when a target first passes its burst)."""
        return open_summaries(self.conn)

    def emit(self, kind: str, target: Target, alert: NotifyAlert, extra: dict[str, Any] | None = None) -> None:
        """Queue a message about an alert for a target (grouped into a summary during a storm); see flush()."""
        seen = self._counts.get(target.key, 0)
        self._counts[target.key] = seen + 1
        values = NewMessage(
            created_at=self.now,
            next_at=self.now,
            kind=kind,
            alert_id=alert.id,
            episode=alert.episode,
            dedup_key=dedup_key(alert.id, alert.episode),
            target_type=target.type,
            target_id=target.id,
            user_id=target.user_id,
            payload=alert_payload(kind, alert, extra),
        )
        if seen >= self.delivery.burst:
            summary = self._open.get(target.key)
            if summary is None:
                summary = add_message(self.conn, NewMessage(
                    created_at=self.now,
                    next_at=self.now + self.delivery.summary_delay_seconds,
                    kind="summary",
                    dedup_key=f"pocketnoc-summary-{target.type}{target.id}-{int(self.now * 1000)}",
                    target_type=target.type,
                    target_id=target.id,
                    user_id=target.user_id,
                    payload={"kind": "summary", "title": "Several alerts", "path": "/alerts"},
                ))
                self._open[target.key] = summary
            values = replace(values, status="grouped", summary_id=summary)
        self.created += 1
        self._rows.append(values)

    def flush(self) -> None:
        """Insert the queued messages in one statement."""
        add_messages(self.conn, self._rows)
        self._rows = []


def _behind(payload: dict[str, Any], field: str) -> str:
    """' (+5 behind it)' for a parent whose message speaks for the devices behind it."""
    count = int(payload.get(field) or 0)
    return f" (+{count} behind it)" if count else ""


def compose(members: list[Message], now: float | None = None) -> dict[str, Any]:
    """The payload of a summary from the messages it gathered (firing and resolved alerts, most severe first)."""
    firing: dict[int, Any] = {}
    resolved: dict[int, Any] = {}
    for m in members:
        payload = m.payload or {}
        (resolved if m.kind == "resolve" else firing)[int(m.alert_id or 0)] = payload
    for alert_id in resolved:
        firing.pop(alert_id, None)
    rank = {"critical": 0, "warning": 1, "info": 2}
    ordered = sorted(firing.values(), key=lambda p: (rank.get(str(p.get("severity")), 9), str(p.get("device"))))
    parts = []
    if firing:
        parts.append(f"{len(firing)} alert{'s' if len(firing) != 1 else ''} firing")
    if resolved:
        parts.append(f"{len(resolved)} resolved")
    lines = [f"{SEVERITY_WORD.get(str(p.get('severity')), 'ALERT')} {clean(p.get('title'), 120)}{_behind(p, 'dependents_count')}"
             for p in ordered]
    lines += [f"Resolved: {clean(p.get('title'), 120)}{_behind(p, 'recovered_count')}" for p in resolved.values()]
    if len(lines) > MAX_SUMMARY_LINES:
        lines = [*lines[: MAX_SUMMARY_LINES - 1], f"… and {len(lines) - MAX_SUMMARY_LINES + 1} more"]
    worst = next((str(p.get("severity")) for p in ordered), "info")
    return {
        "kind": "summary",
        "title": "; ".join(parts) or "Alerts changed",
        "lines": lines,
        "severity": worst,
        "path": "/alerts",
        "count": len(firing) + len(resolved),
        "at": now or time.time(),
    }
