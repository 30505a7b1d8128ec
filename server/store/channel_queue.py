"""A channel's waiting messages move together: one back-off per channel, and released at once when it answers."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import ColumnElement, Connection, and_, case, exists, func, or_, select, update

from server.store.notify_targets import ChannelRow
from server.store.schema import notify_channels, notify_messages, push_subscriptions, users


class FailingChannelRow(NamedTuple):
    """An enabled channel that is failing or broken, with how many messages wait for it."""

    id: int
    name: str
    status: str
    broken_since: float | None
    last_ok: float | None
    waiting: int


def _waiting(channel_id: int, now: float) -> ColumnElement[bool]:
    """Pending messages to this channel that no sender holds right now."""
    m = notify_messages
    return and_(m.c.target_type == "channel", m.c.target_id == channel_id, m.c.status == "pending",
                or_(m.c.locked_until.is_(None), m.c.locked_until < now))


def defer(conn: Connection, channel_id: int, until: float, now: float) -> int:
    """The channel failed: every message waiting for it is due at `until`, the channel's back-off, not its own."""
    m = notify_messages
    later_summary = and_(m.c.kind == "summary", m.c.attempts == 0, m.c.next_at > until)
    return int(conn.execute(
        update(m).where(_waiting(channel_id, now)).values(next_at=case((later_summary, m.c.next_at), else_=until))
    ).rowcount)


def release(conn: Connection, channel_id: int, now: float) -> int:
    """The channel answered: its waiting messages are due now (a summary still gathering keeps its time)."""
    m = notify_messages
    return int(conn.execute(
        update(m).where(_waiting(channel_id, now), m.c.next_at > now, or_(m.c.kind != "summary", m.c.attempts > 0))
        .values(next_at=now)
    ).rowcount)


def failures(conn: Connection, channel_id: int) -> int:
    """Consecutive failed attempts of a channel."""
    value = conn.execute(select(notify_channels.c.failures).where(notify_channels.c.id == channel_id)).scalar()
    return int(value or 0)


def stalled(conn: Connection, now: float) -> list[ChannelRow]:
    """Enabled channels that are failing or broken and have messages waiting for their back-off (probe candidates)."""
    c, m = notify_channels, notify_messages
    waiting = exists().where(m.c.target_type == "channel", m.c.target_id == c.c.id, m.c.status == "pending",
                             m.c.next_at > now)
    query = select(c).where(c.c.enabled.is_(True), c.c.status != "ok", waiting).order_by(c.c.id)
    return [ChannelRow(**r._mapping) for r in conn.execute(query)]


def broken_names(conn: Connection) -> list[str]:
    """Names of enabled channels marked broken."""
    c = notify_channels
    query = select(c.c.name).where(c.c.enabled.is_(True), c.c.status == "broken").order_by(c.c.name)
    return [str(n) for n in conn.execute(query).scalars()]


def failing(conn: Connection) -> list[FailingChannelRow]:
    """Enabled channels that are failing or broken (name, status, since, waiting messages), for banners and /healthz."""
    c, m = notify_channels, notify_messages
    waiting = (select(func.count()).select_from(m)
               .where(m.c.target_type == "channel", m.c.target_id == c.c.id, m.c.status == "pending").scalar_subquery())
    query = (select(c.c.id, c.c.name, c.c.status, c.c.broken_since, c.c.last_ok, waiting.label("waiting"))
             .where(c.c.enabled.is_(True), c.c.status != "ok").order_by(c.c.name))
    return [FailingChannelRow(int(r.id), str(r.name), str(r.status), r.broken_since, r.last_ok, int(r.waiting or 0))
            for r in conn.execute(query)]


def other_ways(conn: Connection, failing_ids: list[int]) -> int:
    """Healthy channels besides these, plus admins' push devices: the ways a failing channel can be announced."""
    c = notify_channels
    healthy = conn.execute(select(func.count()).select_from(c).where(
        c.c.enabled.is_(True), c.c.status == "ok", c.c.id.not_in(failing_ids or [-1]))).scalar()
    phones = conn.execute(select(func.count()).select_from(push_subscriptions).join(
        users, users.c.id == push_subscriptions.c.user_id).where(users.c.role == "admin", users.c.disabled.is_(False))).scalar()
    return int(healthy or 0) + int(phones or 0)
