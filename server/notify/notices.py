"""Messages that are not about one alert: tests, and a broken (or recovered) channel told through the others."""

from __future__ import annotations

import secrets
from typing import Any

from server.notify.message import clean, when
from server.notify.routing import Directory, Target
from server.store.db import Connection
from server.store.notify import add_message
from server.store.notify_records import NewMessage
from server.store.notify_targets import ChannelRow


def plain(conn: Connection, kind: str, target: Target, payload: dict[str, Any], key: str, now: float) -> int:
    """Queue one message that bypasses routing and storm grouping."""
    return add_message(conn, NewMessage(created_at=now, next_at=now, kind=kind, dedup_key=key[:96], target_type=target.type,
                                        target_id=target.id, user_id=target.user_id, payload=payload))


def test_message(conn: Connection, target: Target, who: str, now: float) -> int:
    """A test notification asked for by a person."""
    payload = {"kind": "test", "title": "pocketnoc test notification", "severity": "info", "path": "/notify",
               "lines": [f"Sent by {clean(who, 64)} at {when(now)}.", "If you can read this, the channel works."]}
    return plain(conn, "test", target, payload, f"pocketnoc-test-{secrets.token_hex(6)}", now)


def channel_health(conn: Connection, channel: ChannelRow, transition: str, detail: str, now: float) -> int:
    """Tell admins' phones and every other healthy channel that a channel broke (or works again)."""
    directory = Directory(conn)
    broken = transition == "broken"
    title = f"Notification channel {clean(channel.name, 64)} is {'failing' if broken else 'working again'}"
    lines = [f"Last error: {clean(detail, 200)}"] if broken else ["Messages to it are delivered again."]
    payload = {"kind": "system", "title": title, "lines": lines, "severity": "critical" if broken else "info",
               "path": "/notify/channels"}
    since = int(channel.broken_since or now) if not broken else int(now)
    key = f"pocketnoc-channel-{channel.id}-{since}"
    sent = 0
    for target in directory.reach(directory.admins(), ["*"]):
        if target.type == "channel" and (target.id == channel.id or target.id in directory.broken):
            continue
        plain(conn, "system", target, payload, key, now)
        sent += 1
    return sent
