"""Claiming, sending and recording one message: send-time checks, action tokens, retries, broken channels, gone devices."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from server.keys.secretbox import SecretBox, SecretsUnavailable
from server.notify import notices, webpush
from server.notify.channels import Channel, ChannelError, build
from server.notify.config import NotifyConfig
from server.notify.message import Note, build_note, push_json
from server.notify.outcome import Outcome, backoff
from server.notify.routing import OPERATOR_ROLES
from server.notify.summaries import compose
from server.store import channel_queue, deliveries
from server.store import notify as store
from server.store import notify_targets as targets
from server.store.db import Connection, Engine
from server.store.notify_records import Attempt, Message, NotifyAlert
from server.store.notify_targets import ChannelRow, PushSubscriptionInfo, SubscriptionRow

log = logging.getLogger("pocketnoc.notify")
ACTIONABLE = ("trigger", "escalate", "reminder")


@dataclass
class Job:
    """A claimed message with everything needed to send it outside the transaction."""

    row: Message
    # what goes out, and through which channel
    note: Note | None = None
    channel: Channel | None = None
    channel_row: ChannelRow | None = None
    # whether the message may carry action buttons; a push subscription and its action token when it does
    can_act: bool = False
    sub: PushSubscriptionInfo | None = None
    token: str | None = None
    receipt: int | None = None  # the attempt's receipt, written before the send


def renew(engine: Engine, jobs: list[Job], lease: float, now: float) -> int:
    """Extend the claims of jobs still being sent whose claim runs out within half a lease; returns how many."""
    claims = {j.row.id: j.row.locked_until for j in jobs}
    due = {i: until for i, until in claims.items() if until is not None and until - now < lease / 2}
    if not due:
        return 0
    until = now + lease
    with engine.begin() as conn:
        extended = deliveries.extend_claims(conn, due, until)
    for job in jobs:
        if job.row.id in extended:  # finishing the message is fenced on the extended claim
            job.row = replace(job.row, locked_until=until)
    return len(extended)


def claim(engine: Engine, box: SecretBox, config: NotifyConfig, base_url: str | None, limit: int,
          guard: Callable[[Connection], bool] | None = None, now: float | None = None) -> list[Job]:
    """Lease due messages and prepare them; messages that must not go out are finished here (skipped or dead).

    `guard` runs first in the same transaction: the sender's lease fence (nothing is claimed without it).
    """
    now = time.time() if now is None else now
    with engine.begin() as conn:
        store.serialise(conn)
        if guard is not None and not guard(conn):
            return []
        rows = store.claim_messages(conn, now, limit, config.delivery.lease_seconds)
        if not rows:
            return []
        channels = {r.id: r for r in targets.channel_rows(conn, [r.target_id for r in rows if r.target_type == "channel"])}
        subs = {r.id: r for r in targets.subscription_rows(conn, [r.target_id for r in rows if r.target_type == "push"])}
        alerts = store.alerts_by_id(conn, [r.alert_id for r in rows if r.alert_id is not None])
        holds = store.Holds(conn, now)
        jobs = []
        for row in rows:
            job = Job(row)
            problem = _prepare(conn, job, box, config, base_url, channels, subs, alerts, holds, now)
            if problem is None:
                jobs.append(job)
                continue
            result, reason = problem
            next_at = None
            if result == "retry":  # e.g. the secrets key changed under us: keep it for after the restart, never lose it
                d = config.delivery
                next_at = now + backoff(row.attempts + 1, d.backoff_seconds, d.backoff_max_seconds, None,
                                        d.retry_after_max_seconds)
            store.finish_message(conn, row, now, result, "not sent", reason, None, next_at)
        # On record before it is sent: a crash mid-send shows as a second attempt and a possible duplicate.
        receipts = deliveries.start_attempts(conn, [j.row for j in jobs], now)
        for job in jobs:
            job.receipt = receipts.get(job.row.id)
        return jobs


def _alert(alerts: dict[int, NotifyAlert], alert_id: int | None) -> NotifyAlert | None:
    return alerts.get(alert_id) if alert_id is not None else None


def _prepare(conn: Connection, job: Job, box: SecretBox, config: NotifyConfig, base_url: str | None,
             channels: dict[int, ChannelRow], subs: dict[int, SubscriptionRow], alerts: dict[int, NotifyAlert],
             holds: store.Holds, now: float) -> tuple[str, str] | None:
    row = job.row
    payload = dict(row.payload or {})
    if row.kind in ACTIONABLE:
        alert = _alert(alerts, row.alert_id)
        reason = holds.reason(alert) if alert is not None else "the alert is gone"
        if reason is not None and reason != "resolved":  # a resolve follows a late trigger: both go out, in order
            return "skipped", f"not sent: {reason}"
    elif row.kind in ("resolve", "flapping") and not store.was_notified(conn, row.target_type, row.target_id, row.alert_id,
                                                                        row.episode):
        return "skipped", "not sent: nothing about this alert reached this target"
    elif row.kind == "flapping":  # acknowledged, snoozed, silenced or hidden behind a parent: no new buzz
        alert = _alert(alerts, row.alert_id)
        reason = holds.reason(alert) if alert is not None else "the alert is gone"
        if reason is not None:
            return "skipped", f"not sent: {reason}"
    elif row.kind == "summary":
        members = store.summary_members(conn, row.id)
        member_alerts = store.alerts_by_id(conn, [m.alert_id for m in members if m.alert_id is not None])
        keep: list[Message] = []
        drop: list[Message] = []
        for m in members:
            alert = _alert(member_alerts, m.alert_id)
            reason = holds.reason(alert) if alert is not None else "gone"
            (drop if m.kind in ACTIONABLE and reason not in (None, "resolved") else keep).append(m)
        store.set_status(conn, [m.id for m in drop], "skipped", "not sent: held when its summary went out")
        if not keep:
            return "skipped", "not sent: every alert in it was acknowledged, snoozed, silenced or hidden"
        payload = compose(keep, now)
    try:
        if row.target_type == "channel":
            found = channels.get(row.target_id)
            if found is None or not found.enabled:
                return "skipped", "not sent: the channel was removed or disabled"
            job.channel_row = found
            job.channel = build(targets.channel_url(box, found), bool(found.allow_unsafe))
        else:
            sub = subs.get(row.target_id)
            if sub is None:
                return "gone", "the device was unsubscribed"
            job.sub = targets.subscription_keys(box, sub)
            role = targets.user_role(conn, sub.user_id)
            job.can_act = role is not None and role[0] in OPERATOR_ROLES and not role[1]
            if job.can_act and row.kind in ACTIONABLE and row.alert_id is not None:
                ttl = config.delivery.action_token_minutes * 60
                job.token = targets.issue_token(conn, row.id, sub.user_id, row.alert_id, now, ttl)
    except ChannelError as exc:
        return "dead", f"channel URL refused: {exc}"
    except SecretsUnavailable as exc:  # the key changed (a forced rotation): retried after the restart, not lost
        return "retry", str(exc)
    job.note = build_note(payload, row.dedup_key, base_url)
    return None


async def send(job: Job, config: NotifyConfig, keys: webpush.VapidKeys | None) -> Outcome:
    """One attempt (never raises)."""
    timeout = config.delivery.timeout_seconds
    note = job.note
    if note is None:
        return Outcome(False, "error", "nothing to send", permanent=True)
    try:
        if job.channel is not None:
            return await job.channel.send(note, timeout)
        if job.sub is not None and keys is not None:
            urgent = note.kind in ACTIONABLE and note.severity == "critical"
            data = push_json(note, job.token, job.can_act)
            return await webpush.send(keys, job.sub, data, config.push.ttl_seconds, "high" if urgent else "normal",
                                      note.dedup_key, timeout)
    except Exception as exc:  # a bug in one channel must not stop the worker
        log.exception("sending message %s failed unexpectedly", job.row.id)
        return Outcome(False, "error", f"{type(exc).__name__}: {exc}"[:300])
    return Outcome(False, "error", "no target", permanent=True)


def record_many(engine: Engine, results: list[tuple[Job, Outcome, float]], config: NotifyConfig,
                now: float | None = None) -> list[str]:
    """Write receipts and next states of finished attempts in one transaction; returns each result."""
    now = time.time() if now is None else now
    d = config.delivery
    finished: list[Attempt] = []
    verdicts = []
    for job, outcome, ms in results:
        row = job.row
        next_at = None
        if outcome.ok:
            result = "ok"
        elif outcome.gone:
            result = "gone"
        elif outcome.permanent:
            result = "dead"
        else:
            wait = backoff(row.attempts + 1, d.backoff_seconds, d.backoff_max_seconds, outcome.retry_after,
                           d.retry_after_max_seconds)
            expired = now + wait - row.created_at > d.max_age_hours * 3600
            result = "dead" if expired else "retry"
            next_at = None if expired else now + wait
        verdicts.append(result)
        finished.append(Attempt(row, now, result, outcome.status or result, outcome.detail, ms, next_at))
    with engine.begin() as conn:
        started = {job.row.id: job.receipt for job, _o, _ms in results if job.receipt is not None}
        counted = store.finish_messages(conn, finished, started)
        # A late result from a claim that moved on is on record, but the current sender's results judge the channel.
        current = [r for r in results if r[0].row.id in counted]
        _health(conn, current, now, d.broken_after_failures)
        _pace_channels(conn, current, config, now)
    return verdicts


def _pace_channels(conn: Connection, results: list[tuple[Job, Outcome, float]], config: NotifyConfig, now: float) -> None:
    """One back-off per channel: its last answer in this batch releases (ok) or defers (retry) all its waiting messages."""
    last: dict[int, Outcome] = {}
    for job, outcome, _ms in results:
        if job.channel_row is not None:
            last[int(job.channel_row.id)] = outcome
    d = config.delivery
    for channel_id, outcome in last.items():
        if outcome.ok:
            channel_queue.release(conn, channel_id, now)
        elif not (outcome.permanent or outcome.gone):
            wait = backoff(channel_queue.failures(conn, channel_id), d.backoff_seconds, d.backoff_max_seconds,
                           outcome.retry_after, d.retry_after_max_seconds)
            channel_queue.defer(conn, channel_id, now + wait, now)


def _health(conn: Connection, results: list[tuple[Job, Outcome, float]], now: float, broken_after: int) -> None:
    """Channel health and device bookkeeping, once per target per batch."""
    channels: dict[int, list[tuple[Job, Outcome]]] = {}
    channel_rows: dict[int, ChannelRow] = {}
    devices: dict[int, Outcome] = {}
    for job, outcome, _ms in results:
        if job.channel_row is not None:
            channels.setdefault(job.channel_row.id, []).append((job, outcome))
            channel_rows.setdefault(job.channel_row.id, job.channel_row)
        elif job.row.target_type == "push" and (job.row.target_id not in devices or not devices[job.row.target_id].gone):
            devices[job.row.target_id] = outcome  # the last attempt counts, but gone stays gone
    for channel_id, attempts in channels.items():
        row = channel_rows[channel_id]
        last_ok = max((i for i, (_j, o) in enumerate(attempts) if o.ok), default=-1)
        changes = []
        if last_ok >= 0:
            changes.append(targets.mark_channel(conn, row, True, "", now, broken_after))
        failures = attempts[last_ok + 1:]
        if failures:
            last = failures[-1][1]
            detail = f"{last.status} {last.detail}".strip()
            changes.append(targets.mark_channel(conn, row, False, detail, now, broken_after, len(failures)))
        for change in changes:
            if change is not None:
                detail = f"{attempts[-1][1].status} {attempts[-1][1].detail}".strip()
                log.warning("notification channel %s is %s", row.name, change)
                notices.channel_health(conn, row, change, detail, now)
    for sub_id, outcome in devices.items():
        if outcome.gone:
            targets.delete_subscription(conn, sub_id)
            store.drop_target_messages(conn, "push", sub_id, now)
        else:
            targets.mark_subscription(conn, sub_id, outcome.ok, f"{outcome.status} {outcome.detail}".strip(), now)
