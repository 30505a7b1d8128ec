"""Failing channels for the pages' banner and /healthz: the ways left to tell admins when a channel stops working."""

from __future__ import annotations

from dataclasses import dataclass

from server.store import channel_queue
from server.store.db import Connection


@dataclass(frozen=True, slots=True)
class FailingChannel:
    """A channel that is failing or broken, and how many messages wait for it."""

    name: str
    status: str
    since: float | None
    waiting: int


@dataclass(frozen=True, slots=True)
class ChannelAlarm:
    """Failing channels, and whether no other channel or admin phone is left to announce them."""

    channels: tuple[FailingChannel, ...]
    unannounced: bool

    @property
    def degraded(self) -> bool:
        """/healthz says degraded: a channel is broken, or failing with nobody else to tell."""
        return any(c.status == "broken" for c in self.channels) or (bool(self.channels) and self.unannounced)


def channel_alarm(conn: Connection) -> ChannelAlarm:
    """The failing channels now."""
    rows = channel_queue.failing(conn)
    channels = tuple(FailingChannel(str(r.name), str(r.status), r.broken_since, int(r.waiting or 0)) for r in rows)
    unannounced = bool(rows) and channel_queue.other_ways(conn, [int(r.id) for r in rows]) == 0
    return ChannelAlarm(channels, unannounced)
