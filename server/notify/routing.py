"""Routing: which routes take an alert, and who those routes (and escalation steps) reach right now."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.notify.config import NotifyConfig, Route
from server.store.db import Connection
from server.store.notify_targets import channel_rows, recipients, subscription_rows

OPERATOR_ROLES = frozenset({"operator", "admin"})


@dataclass(frozen=True, slots=True)
class Target:
    """Where one message goes: a channel or a push subscription, and the person it is for (if any)."""

    type: str  # "channel" or "push"
    id: int
    user_id: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        """Identity for grouping and de-duplication."""
        return (self.type, self.id)


def matching_routes(config: NotifyConfig, alert: Any, now: float) -> list[Route]:
    """Routes that take this alert now, in order, up to the first matching route marked stop."""
    found = []
    tags = list(alert.device_tags or [])
    for route in config.effective_routes():
        if route.applies(str(alert.severity), tags, str(alert.device_name), str(alert.rule), now):
            found.append(route)
            if route.stop:
                break
    return found


class Directory:
    """Users, their devices and personal channels, and shared channels (loaded once per planning pass)."""

    def __init__(self, conn: Connection) -> None:
        self.users = {r.name: r for r in recipients(conn, ["*"])}
        self.user_ids = {r.id for r in self.users.values()}
        self.devices: dict[int, list[int]] = {}
        for sub in subscription_rows(conn):
            self.devices.setdefault(sub.user_id, []).append(sub.id)
        self.shared: dict[str, int] = {}
        self.personal: dict[int, list[int]] = {}
        self.by_name: dict[str, tuple[int, int | None]] = {}
        self.broken: set[int] = set()
        for ch in channel_rows(conn):
            if not ch.enabled:
                continue
            if ch.status == "broken":
                self.broken.add(ch.id)
            self.by_name[ch.name] = (ch.id, ch.user_id)
            if ch.user_id is None:
                self.shared[ch.name] = ch.id
            else:
                self.personal.setdefault(ch.user_id, []).append(ch.id)

    def for_users(self, names: list[str]) -> list[Target]:
        """Every push subscription and personal channel of these users ("*" = everyone)."""
        chosen = list(self.users.values()) if "*" in names else [self.users[n] for n in names if n in self.users]
        out: list[Target] = []
        for user in chosen:
            out += [Target("push", sub_id, user.id) for sub_id in self.devices.get(user.id, [])]
            out += [Target("channel", ch_id, user.id) for ch_id in self.personal.get(user.id, [])]
        return out

    def for_channels(self, names: list[str]) -> list[Target]:
        """Channels by name ("*" = every shared channel); a personal channel named here still goes to its owner."""
        if "*" in names:
            return [Target("channel", ch_id) for ch_id in self.shared.values()]
        out = []
        for name in names:
            found = self.by_name.get(name)
            if found is not None:
                out.append(Target("channel", found[0], found[1]))
        return out

    def reach(self, users: list[str], channels: list[str]) -> list[Target]:
        """Users and channels together, each target once."""
        seen: dict[tuple[str, int], Target] = {}
        for target in self.for_users(users) + self.for_channels(channels):
            seen.setdefault(target.key, target)
        return list(seen.values())

    def admins(self) -> list[str]:
        """Names of enabled admins (system notices go to them)."""
        return [name for name, row in self.users.items() if row.role == "admin"]

    def can_act(self, user_id: int | None) -> bool:
        """May this person acknowledge and snooze (operator or admin)?"""
        if user_id is None:
            return False
        return any(row.id == user_id and row.role in OPERATOR_ROLES for row in self.users.values())
