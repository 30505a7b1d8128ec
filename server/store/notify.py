"""SQL of the notification worker: outbox events, escalation tracks, messages, claims with leases, delivery receipts."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields

from sqlalchemy import Connection, and_, bindparam, delete, exists, func, insert, or_, select, text, update

from server.store import deliveries
from server.store.alerts import active_silences, silence_matches
from server.store.notify_records import Attempt, Message, NewMessage, NotifiedTarget, NotifyAlert, OutboxEvent, Track
from server.store.schema import alerts, devices, notify_deliveries, notify_messages, notify_outbox, notify_tokens, notify_tracks

NOTIFYING_KINDS = ("trigger", "escalate", "reminder")
STORM_KINDS = ("trigger", "escalate", "reminder", "resolve")
OPEN_STATUSES = ("pending", "grouped")
WAITING_TRACKS = ("held", "active", "closing")  # closing: a resolve waiting one poll for the dependents it speaks for
_LOCK_KEY = 0x706E6E6F  # "pnno": serialises planners and claimers across processes on PostgreSQL


def serialise(conn: Connection) -> None:
    """Take the notification lock for this transaction (SQLite's BEGIN IMMEDIATE already serialises writers)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


# ---------------------------------------------------------------- outbox events


def pending_events(conn: Connection, limit: int) -> list[OutboxEvent]:
    """Unprocessed outbox rows, oldest first."""
    query = select(notify_outbox).where(notify_outbox.c.done_at.is_(None)).order_by(notify_outbox.c.id).limit(limit)
    return [OutboxEvent(**r._mapping) for r in conn.execute(query.with_for_update(skip_locked=True))]


def finish_events(conn: Connection, ids: list[int], now: float) -> None:
    """Mark outbox rows processed."""
    if ids:
        conn.execute(update(notify_outbox).where(notify_outbox.c.id.in_(ids)).values(done_at=now))


def outbox_backlog(conn: Connection) -> int:
    """How many outbox rows wait."""
    query = select(func.count()).select_from(notify_outbox).where(notify_outbox.c.done_at.is_(None))
    return int(conn.execute(query).scalar() or 0)


# ---------------------------------------------------------------- alerts as the planner needs them


def alerts_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, NotifyAlert]:
    """Alerts with their device's name and tags."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    columns = [alerts.c[f.name] for f in fields(NotifyAlert) if f.name in alerts.c]
    query = (
        select(*columns, devices.c.name.label("device_name"), devices.c.tags.label("device_tags"))
        .join(devices, devices.c.id == alerts.c.device_id)
        .where(alerts.c.id.in_(wanted))
    )
    return {row.id: NotifyAlert(**row._mapping) for row in conn.execute(query)}


class Holds:
    """Tells whether an alert may notify now (silences read once per pass)."""

    def __init__(self, conn: Connection, now: float) -> None:
        self.now = now
        self.silences = active_silences(conn, now)

    def reason(self, alert: NotifyAlert) -> str | None:
        """Why this alert must not notify now, or None."""
        if alert.status != "firing":
            return "resolved"
        if alert.acked_at:
            return "acknowledged"
        if alert.suppressed_by:
            return "hidden behind an upstream outage"
        if alert.snoozed_until and alert.snoozed_until > self.now:
            return "snoozed"
        tags = list(alert.device_tags or [])
        if any(silence_matches(s, alert.device_id, tags) for s in self.silences):
            return "silenced"
        return None


# ---------------------------------------------------------------- escalation tracks


_TRACK_UPDATE = update(notify_tracks).where(notify_tracks.c.alert_id == bindparam("b_alert"))


def put_track(conn: Connection, track: Track, exists_already: bool) -> None:
    """Insert a track or write all of it (parameters, not literals: the statement stays in SQLAlchemy's cache)."""
    values = asdict(track)
    if exists_already:
        conn.execute(_TRACK_UPDATE, {"b_alert": values.pop("alert_id"), **values})
    else:
        conn.execute(insert(notify_tracks), values)


def move_track(conn: Connection, alert_id: int, status: str, next_at: float | None, now: float) -> None:
    """Set a track's status and when it is looked at next."""
    conn.execute(_TRACK_UPDATE, {"b_alert": alert_id, "status": status, "next_at": next_at, "updated_at": now})


def tracks_by_alert(conn: Connection, ids: Iterable[int]) -> dict[int, Track]:
    """Tracks of these alerts."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    query = select(notify_tracks).where(notify_tracks.c.alert_id.in_(wanted))
    return {r.alert_id: Track(**r._mapping) for r in conn.execute(query)}


def due_tracks(conn: Connection, now: float, limit: int) -> list[Track]:
    """Tracks whose next step (first notification, escalation, end of a hold) is due."""
    query = (
        select(notify_tracks)
        .where(notify_tracks.c.status.in_(WAITING_TRACKS), notify_tracks.c.next_at <= now)
        .order_by(notify_tracks.c.next_at)
        .limit(limit)
    )
    return [Track(**r._mapping) for r in conn.execute(query)]


def next_track_due(conn: Connection) -> float | None:
    """When the earliest track is due."""
    value = conn.execute(
        select(func.min(notify_tracks.c.next_at)).where(notify_tracks.c.status.in_(WAITING_TRACKS))
    ).scalar()
    return float(value) if value is not None else None


# ---------------------------------------------------------------- messages


def add_message(conn: Connection, values: NewMessage) -> int:
    """Insert a message; returns its id."""
    result = conn.execute(insert(notify_messages), asdict(values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def add_messages(conn: Connection, rows: list[NewMessage]) -> None:
    """Insert many messages in one executemany."""
    if rows:
        conn.execute(insert(notify_messages), [asdict(r) for r in rows])


def recent_counts(conn: Connection, since: float) -> dict[tuple[str, int], int]:
    """Alert messages per target created since `since` (the storm limiter's memory)."""
    m = notify_messages
    rows = conn.execute(
        select(m.c.target_type, m.c.target_id, func.count())
        .where(m.c.created_at >= since, m.c.kind.in_(STORM_KINDS), m.c.status != "skipped")
        .group_by(m.c.target_type, m.c.target_id)
    )
    return {(r[0], int(r[1])): int(r[2]) for r in rows}


def open_summaries(conn: Connection) -> dict[tuple[str, int], int]:
    """Summaries not yet taken by a sender, per target (grouped messages join them)."""
    m = notify_messages
    rows = conn.execute(
        select(m.c.id, m.c.target_type, m.c.target_id).where(
            m.c.kind == "summary", m.c.status == "pending", m.c.attempts == 0, m.c.locked_until.is_(None)
        )
    )
    return {(r.target_type, int(r.target_id)): int(r.id) for r in rows}


def notified_targets(conn: Connection, alert_id: int, episode: int) -> list[NotifiedTarget]:
    """Targets that were sent (or will be sent) a firing message about this incident."""
    m = notify_messages
    rows = conn.execute(
        select(m.c.target_type, m.c.target_id, m.c.user_id)
        .where(
            m.c.alert_id == alert_id,
            m.c.episode == episode,
            m.c.kind.in_(NOTIFYING_KINDS),
            m.c.status.in_(("pending", "sent", "grouped", "summarized")),
        )
        .distinct()
    )
    return [NotifiedTarget(str(r.target_type), int(r.target_id), r.user_id) for r in rows]


def claim_messages(conn: Connection, now: float, limit: int, lease: float) -> list[Message]:
    """Lease due messages whose earlier messages to the same target about the same alert are finished (order).

    A channel's backlog goes one at a time, oldest first: an earlier pending message that has waited (retried,
    deferred by the channel's back-off or released by its recovery: next_at moved from created_at) holds every later
    one back. So a failing channel is tried by one message per back-off and gets its backlog in order when it answers;
    fresh messages to a healthy channel go concurrently, and summaries go when due.
    """
    m = notify_messages
    prev = notify_messages.alias("prev")
    same_alert = and_(prev.c.alert_id == m.c.alert_id, prev.c.status.in_(OPEN_STATUSES))
    channel_queue = and_(m.c.target_type == "channel", m.c.kind != "summary", prev.c.kind != "summary",
                         prev.c.status == "pending", prev.c.next_at != prev.c.created_at)
    blocked = exists().where(
        prev.c.target_type == m.c.target_type,
        prev.c.target_id == m.c.target_id,
        prev.c.id < m.c.id,
        or_(same_alert, channel_queue),
    )
    query = (
        select(m)
        .where(m.c.status == "pending", m.c.next_at <= now, or_(m.c.locked_until.is_(None), m.c.locked_until < now), ~blocked)
        .order_by(m.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=m)
    )
    ids = [r.id for r in conn.execute(query)]
    if not ids:
        return []
    conn.execute(update(m).where(m.c.id.in_(ids)).values(locked_until=now + lease))
    # The rows as claimed: their locked_until is this claim, which finishing them must still find (a fence).
    return [Message(**r._mapping) for r in conn.execute(select(m).where(m.c.id.in_(ids)).order_by(m.c.id))]


def next_message_due(conn: Connection) -> float | None:
    """When the earliest pending message is due."""
    value = conn.execute(select(func.min(notify_messages.c.next_at)).where(notify_messages.c.status == "pending")).scalar()
    return float(value) if value is not None else None


def summary_members(conn: Connection, summary_id: int) -> list[Message]:
    """Messages waiting in a summary."""
    m = notify_messages
    query = select(m).where(m.c.summary_id == summary_id, m.c.status == "grouped").order_by(m.c.id)
    return [Message(**r._mapping) for r in conn.execute(query)]


_MESSAGE_UPDATE = (
    update(notify_messages)
    .where(notify_messages.c.id == bindparam("b_id"), notify_messages.c.locked_until == bindparam("b_lock"))
    .values(status=bindparam("v_status"), locked_until=None, last_status=bindparam("v_last_status"),
            last_error=bindparam("v_last_error"), attempts=notify_messages.c.attempts + bindparam("v_inc"),
            sent_at=bindparam("v_sent_at"), next_at=bindparam("v_next_at"))
)
_STATUS = {"ok": "sent", "retry": "pending", "dead": "dead", "gone": "gone", "skipped": "skipped"}


def finish_messages(conn: Connection, items: list[Attempt], started: dict[int, int] | None = None) -> set[int]:
    """Record attempts and the messages' new states (executemany statements).

    Each item: the message row as claimed, now, result, provider status, detail, ms, next_at; result is ok, retry, dead,
    gone, skipped. Every attempt gets its receipt; the message's state changes only while the claim it was sent under
    still holds (fencing): a late result from a sender whose lease moved on — its claim expired and the message was
    claimed again — must not overwrite the new sender's (a late "dead" would lose a pending retry; a late "retry"
    would send a delivered message again). Returns the ids whose claim still held (their results count).
    `started`: message id -> receipt written before the send (deliveries.start_attempts), filled in, counted already.
    """
    if not items:
        return set()
    m = notify_messages
    claims = {row.id: row.locked_until for row, *_ in items}
    current = conn.execute(select(m.c.id, m.c.locked_until).where(m.c.id.in_(list(claims))))
    held = {r.id for r in current if r.locked_until == claims[r.id]}
    started = started or {}
    new = [{"message_id": row.id, "ts": now, "result": result, "status": status[:64], "detail": detail[:2000], "ms": ms}
           for row, now, result, status, detail, ms, _next in items if row.id not in started]
    if new:
        conn.execute(insert(notify_deliveries), new)
    deliveries.finish_receipts(conn, [
        {"b_id": started[row.id], "v_ts": now, "v_result": result, "v_status": status[:64], "v_detail": detail[:2000],
         "v_ms": ms} for row, now, result, status, detail, ms, _next in items if row.id in started])

    def params(row: Message, now: float, result: str, status: str, detail: str, next_at: float | None) -> dict[str, object]:
        return {"b_id": row.id, "b_lock": row.locked_until, "v_status": _STATUS[result], "v_last_status": status[:64],
                "v_last_error": None if result == "ok" else detail[:2000],
                "v_inc": 0 if result == "skipped" or row.id in started else 1,
                "v_sent_at": now if result == "ok" else row.sent_at,
                "v_next_at": next_at if next_at is not None else row.next_at}

    plain = [params(row, now, result, status, detail, next_at)
             for row, now, result, status, detail, _ms, next_at in items if row.id in held]
    if plain:
        conn.execute(_MESSAGE_UPDATE, plain)
    for row, _now, result, _s, _d, _ms, _n in items:
        if row.kind == "summary" and row.id in held:
            member_status = {"sent": "summarized", "pending": "grouped"}.get(_STATUS[result], _STATUS[result])
            conn.execute(update(m).where(m.c.summary_id == row.id, m.c.status == "grouped").values(status=member_status))
    return held


def finish_message(conn: Connection, row: Message, now: float, result: str, status: str, detail: str, ms: float | None,
                   next_at: float | None = None) -> bool:
    """Record one attempt (see finish_messages); whether its claim still held."""
    return row.id in finish_messages(conn, [Attempt(row, now, result, status, detail, ms, next_at)])


def drop_target_messages(conn: Connection, target_type: str, target_id: int, now: float) -> int:
    """A target is gone: its waiting messages are finished as gone."""
    m = notify_messages
    return int(
        conn.execute(
            update(m)
            .where(m.c.target_type == target_type, m.c.target_id == target_id, m.c.status.in_(OPEN_STATUSES))
            .values(status="gone", locked_until=None, last_error="the target was removed", next_at=now)
        ).rowcount
    )


# ---------------------------------------------------------------- views and chores


def requeue(conn: Connection, message_id: int, now: float) -> bool:
    """Send a dead-lettered message again."""
    m = notify_messages
    return bool(
        conn.execute(
            update(m).where(m.c.id == message_id, m.c.status == "dead").values(status="pending", next_at=now, locked_until=None)
        ).rowcount
    )


def discard(conn: Connection, message_id: int) -> bool:
    """Give up on a dead-lettered or waiting message."""
    m = notify_messages
    return bool(
        conn.execute(
            update(m).where(m.c.id == message_id, m.c.status.in_(("dead", "pending"))).values(status="skipped", locked_until=None,
                                                                                             last_error="discarded")
        ).rowcount
    )


def counts(conn: Connection, kind: str | None = None) -> dict[str, int]:
    """Messages per status (for the status page and /metrics), of one kind ("trigger", ...) when given."""
    m = notify_messages
    query = select(m.c.status, func.count()).group_by(m.c.status)
    if kind is not None:
        query = query.where(m.c.kind == kind)
    return {str(s): int(n) for s, n in conn.execute(query)}


def prune(conn: Connection, now: float, keep_days: float) -> None:
    """Forget processed outbox rows after a day, finished messages and tracks after keep_days, stale tokens."""
    conn.execute(delete(notify_outbox).where(notify_outbox.c.done_at < now - 86400))
    cutoff = now - keep_days * 86400
    m = notify_messages
    conn.execute(delete(m).where(m.c.created_at < cutoff, m.c.status.in_(("sent", "dead", "gone", "skipped", "summarized"))))
    conn.execute(delete(notify_tracks).where(notify_tracks.c.status.in_(("done", "acked")), notify_tracks.c.updated_at < cutoff))
    t = notify_tokens
    conn.execute(delete(t).where(or_(t.c.expires_at < now - 86400, and_(t.c.used_at.is_not(None), t.c.used_at < now - 86400))))


def was_notified(conn: Connection, target_type: str, target_id: int, alert_id: int | None, episode: int | None) -> bool:
    """Did this target get a firing message about this incident (alone or in a summary)?"""
    m = notify_messages
    return conn.execute(
        select(m.c.id).where(
            m.c.target_type == target_type,
            m.c.target_id == target_id,
            m.c.alert_id == alert_id,
            m.c.episode == episode,
            m.c.kind.in_(NOTIFYING_KINDS),
            m.c.status.in_(("sent", "summarized")),
        ).limit(1)
    ).first() is not None


def set_status(conn: Connection, ids: list[int], status: str, reason: str) -> None:
    """Finish messages without sending them (e.g. grouped alerts acknowledged before their summary went out)."""
    if ids:
        m = notify_messages
        conn.execute(update(m).where(m.c.id.in_(ids)).values(status=status, last_error=reason[:2000], locked_until=None))
