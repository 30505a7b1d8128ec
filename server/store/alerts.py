"""Alerts as people see them: listing, detail, acknowledge, snooze, notes; silences (maintenance)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Connection, delete, insert, select, update

from server.store.alert_records import (
    AlertDetail,
    AlertEvent,
    AlertList,
    AlertView,
    NewSilence,
    OpenAlert,
    Silence,
    SilenceView,
)
from server.store.metrics import labels_of
from server.store.outbox import enqueue
from server.store.schema import alert_events, alerts, devices, silences

SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
OPEN_STATES = ("firing", "acknowledged", "snoozed", "silenced", "suppressed")


class AlertNotFound(Exception):
    """No alert with that id."""


def silence_active(s: Silence, now: float) -> bool:
    """Is this silence in force now (one-off window, or a recurring window within its bounds)?"""
    ends = s.get("ends_at")
    if now < s["starts_at"] or (ends is not None and now >= ends):
        return False
    rec = s.get("recurrence")
    if not rec:
        return True
    try:
        zone = ZoneInfo(str(rec.get("tz") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    local = datetime.fromtimestamp(now, UTC).astimezone(zone)
    hour, minute = (int(x) for x in str(rec.get("start", "00:00")).split(":"))
    days = rec.get("days", list(range(7)))
    length = rec.get("minutes", 60)
    minutes = int(length) if isinstance(length, int | float | str) else 60
    for back in (0, 1, 2, 3, 4, 5, 6, 7):
        day = local - timedelta(days=back)
        if not isinstance(days, list) or day.weekday() not in days:
            continue
        start = day.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if start <= local < start + timedelta(minutes=minutes):
            return True
    return False


def silence_matches(s: Silence, device_id: int, tags: list[str]) -> bool:
    """Does this silence cover that device?"""
    if s.get("everything"):
        return True
    if s.get("device_id") is not None and s["device_id"] == device_id:
        return True
    tag = s.get("tag")
    return bool(tag) and tag in tags


def _silence(row: Any) -> Silence:
    return Silence(
        id=row.id, comment=row.comment, device_id=row.device_id, tag=row.tag, everything=row.everything,
        starts_at=row.starts_at, ends_at=row.ends_at, recurrence=row.recurrence, created_by=row.created_by,
        created_at=row.created_at,
    )  # fmt: skip


def active_silences(conn: Connection, now: float | None = None) -> list[Silence]:
    """Silences in force now."""
    now = time.time() if now is None else now
    rows = [_silence(r) for r in conn.execute(select(silences))]
    return [s for s in rows if silence_active(s, now)]


def _state(row: Any, silenced: bool, now: float) -> str:
    if row.status == "resolved":
        return "resolved"
    if row.suppressed_by:
        return "suppressed"
    if row.acked_at:
        return "acknowledged"
    if row.snoozed_until and row.snoozed_until > now:
        return "snoozed"
    if silenced:
        return "silenced"
    return "firing"


def _query() -> Any:
    parent = devices.alias("blocker")
    return (
        select(
            alerts, devices.c.name.label("device_name"), devices.c.tags.label("device_tags"), parent.c.name.label("blocker_name")
        )
        .join(devices, devices.c.id == alerts.c.device_id)
        .outerjoin(parent, parent.c.id == alerts.c.suppressed_by)
    )


def _view(row: Any, active: list[Silence], now: float) -> AlertView:
    tags = list(row.device_tags or [])
    silenced = row.status == "firing" and any(silence_matches(s, row.device_id, tags) for s in active)
    title = row.title
    if row.hidden:
        title += f" — hiding {row.hidden} dependent alert{'s' if row.hidden != 1 else ''}"
    return {
        "id": row.id,
        "rule": row.rule,
        "device": {"id": row.device_id, "name": row.device_name},
        "labels": labels_of(row.labels),
        "severity": row.severity,
        "title": title,
        "state": _state(row, silenced, now),
        "status": row.status,
        "started_at": row.started_at,
        "resolved_at": row.resolved_at,
        "last_value": row.last_value,
        "episode": row.episode,
        "acked_by": row.acked_by,
        "acked_at": row.acked_at,
        "snoozed_until": row.snoozed_until if row.snoozed_until and row.snoozed_until > now else None,
        "suppressed_by": {"id": row.suppressed_by, "name": row.blocker_name} if row.suppressed_by else None,
        "flapping": bool(row.flapping),
        "silenced": silenced,
        "hidden": row.hidden,
    }


def list_alerts(
    conn: Connection, state: str = "open", severity: str = "", device_id: int | None = None, limit: int = 200, offset: int = 0
) -> AlertList:
    """Alerts filtered by state (open, firing, acknowledged, snoozed, silenced, suppressed, resolved, all)."""
    now = time.time()
    query = _query()
    if state == "resolved":
        query = query.where(alerts.c.status == "resolved").order_by(alerts.c.resolved_at.desc())
    elif state != "all":
        query = query.where(alerts.c.status == "firing")
    if severity:
        query = query.where(alerts.c.severity == severity)
    if device_id is not None:
        query = query.where(alerts.c.device_id == device_id)
    if state in ("resolved", "all"):
        query = query.order_by(alerts.c.id.desc()).limit(limit).offset(offset)
    active = active_silences(conn, now)
    items = [_view(r, active, now) for r in conn.execute(query)]
    counts: dict[str, int] = {}
    if state == "open":  # counted from the rows already read, before paging (same filters as the list)
        for a in items:
            counts[a["state"]] = counts.get(a["state"], 0) + 1
    if state not in ("open", "all", "resolved"):
        items = [a for a in items if a["state"] == state]
    if state in ("open", *OPEN_STATES):
        rank = {"firing": 0, "acknowledged": 1, "snoozed": 2, "silenced": 3, "suppressed": 4}
        items.sort(key=lambda a: (rank.get(a["state"], 9), SEVERITY_RANK.get(a["severity"], 9), -a["started_at"]))
        total = len(items)
        items = items[offset : offset + limit]
    else:
        total = len(items) + offset
    return {"items": items, "total": total, "limit": limit, "offset": offset, "counts": counts}


def get_alert(conn: Connection, alert_id: int) -> AlertDetail:
    """One alert with its history (who did what, when)."""
    row = conn.execute(_query().where(alerts.c.id == alert_id)).first()
    if row is None:
        raise AlertNotFound(alert_id)
    now = time.time()
    events = [
        AlertEvent(ts=e.ts, kind=e.kind, user=e.username, text=e.text)
        for e in conn.execute(select(alert_events).where(alert_events.c.alert_id == alert_id).order_by(alert_events.c.id))
    ]
    return AlertDetail(**_view(row, active_silences(conn, now), now), events=events)


def _open_row(conn: Connection, alert_id: int) -> Any:
    row = conn.execute(select(alerts).where(alerts.c.id == alert_id)).first()
    if row is None:
        raise AlertNotFound(alert_id)
    return row


def record_event(
    conn: Connection, alert_id: int, kind: str, user: str | None = None, text: str = "", ts: float | None = None
) -> None:
    """The one place alert history is written (fired, resolved, acknowledged, snoozed, suppressed ...).

    Everything that must follow an alert change in the same transaction (the notification outbox)
    hangs off this function.
    """
    ts = time.time() if ts is None else ts
    conn.execute(insert(alert_events).values(alert_id=alert_id, ts=ts, kind=kind, username=user, text=text[:2000]))
    enqueue(conn, alert_id, kind, user, ts)


def _log(conn: Connection, alert_id: int, kind: str, user: str, text: str) -> None:
    record_event(conn, alert_id, kind, user, text)


def acknowledge(conn: Connection, alert_id: int, user: str, note: str = "") -> bool:
    """Acknowledge an open alert (with an optional note); False if it was resolved or already acknowledged."""
    row = _open_row(conn, alert_id)
    if row.status != "firing" or row.acked_at:
        return False
    now = time.time()
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(acked_by=user, acked_at=now, updated_at=now))
    _log(conn, alert_id, "acknowledged", user, note)
    return True


def unacknowledge(conn: Connection, alert_id: int, user: str) -> bool:
    """Take an acknowledgement back."""
    row = _open_row(conn, alert_id)
    if row.status != "firing" or not row.acked_at:
        return False
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(acked_by=None, acked_at=None, updated_at=time.time()))
    _log(conn, alert_id, "unacknowledged", user, "")
    return True


def snooze(conn: Connection, alert_id: int, user: str, seconds: int, note: str = "") -> bool:
    """Snooze an open alert for a while (0 ends a snooze)."""
    row = _open_row(conn, alert_id)
    if row.status != "firing":
        return False
    until = time.time() + seconds if seconds > 0 else None
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(snoozed_until=until, updated_at=time.time()))
    text = f"for {seconds // 60} min" if seconds > 0 else "snooze ended"
    _log(conn, alert_id, "snoozed" if seconds > 0 else "unsnoozed", user, f"{text}. {note}".strip(". "))
    return True


def add_note(conn: Connection, alert_id: int, user: str, text: str) -> None:
    """Attach a note to an alert."""
    _open_row(conn, alert_id)
    _log(conn, alert_id, "note", user, text)


def list_silences(conn: Connection) -> list[SilenceView]:
    """All silences, with whether each is in force now."""
    now = time.time()
    names: dict[int, str] = {int(i): str(n) for i, n in conn.execute(select(devices.c.id, devices.c.name))}
    out = []
    for r in conn.execute(select(silences).order_by(silences.c.id.desc())):
        s = _silence(r)
        device = names.get(s["device_id"]) if s["device_id"] else None
        out.append(SilenceView(**s, active=silence_active(s, now), device=device))
    return out


def create_silence(conn: Connection, values: NewSilence, user: str) -> int:
    """Add a maintenance window."""
    result = conn.execute(insert(silences).values(**values, created_by=user, created_at=time.time()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def delete_silence(conn: Connection, silence_id: int) -> bool:
    """End and remove a silence."""
    return bool(conn.execute(delete(silences).where(silences.c.id == silence_id)).rowcount)


def _open_alert(conn: Connection, rule: str, device_id: int, key: str) -> Any:
    return conn.execute(
        select(alerts.c.id, alerts.c.title)
        .where(alerts.c.rule == rule, alerts.c.device_id == device_id, alerts.c.labels == key, alerts.c.status == "firing")
        .order_by(alerts.c.id.desc())
        .limit(1)
    ).first()


def fire_event_alert(
    conn: Connection, rule: str, device_id: int, key: str, severity: str, title: str, now: float, text: str
) -> bool:
    """Open an alert for an event (a trap, a changed host key), or note a repeat on the open one; True if new."""
    found = _open_alert(conn, rule, device_id, key)
    if found is not None:
        conn.execute(update(alerts).where(alerts.c.id == found.id).values(updated_at=now))
        record_event(conn, found.id, "repeated", None, text, now)
        return False
    open_alert(conn, rule, device_id, key, severity, title[:300], now, text)
    return True


def open_alert(
    conn: Connection, rule: str, device_id: int, key: str, severity: str, title: str, now: float, text: str,
    value: float | None = None, suppressed_by: int | None = None,
) -> int:
    """The one way an alert opens (rules, traps, host keys, worker health): the next episode of its (rule, device,
    labels), firing, with its "fired" history entry (and so its notifications); returns its id."""
    episode = 1 + int(
        conn.execute(
            select(alerts.c.episode)
            .where(alerts.c.rule == rule, alerts.c.device_id == device_id, alerts.c.labels == key)
            .order_by(alerts.c.id.desc())
            .limit(1)
        ).scalar()
        or 0
    )
    result = conn.execute(
        insert(alerts).values(
            rule=rule, device_id=device_id, labels=key, severity=severity, title=title, status="firing", started_at=now,
            last_value=value, episode=episode, suppressed_by=suppressed_by, flapping=False, hidden=0, updated_at=now,
        )
    )  # fmt: skip
    alert_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    record_event(conn, alert_id, "fired", None, text, now)
    return alert_id


def touch_alert(conn: Connection, alert_id: int, now: float, value: float | None = None, flapping: bool | None = None) -> None:
    """An open alert seen again: its latest value (and whether it flaps)."""
    values: dict[str, Any] = {"last_value": value, "updated_at": now}
    if flapping is not None:
        values["flapping"] = flapping
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))


def resolve_event_alert(conn: Connection, rule: str, device_id: int, key: str, now: float, text: str) -> None:
    """Close the open event alert of that key, if any."""
    found = _open_alert(conn, rule, device_id, key)
    if found is not None:
        resolve_alert(conn, int(found.id), now, text)


def resolve_alert(conn: Connection, alert_id: int, now: float, text: str, value: float | None = None) -> None:
    """Resolve one alert by id, with its history entry (and so its notifications)."""
    values: dict[str, Any] = {"status": "resolved", "resolved_at": now, "updated_at": now}
    if value is not None:
        values["last_value"] = value
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))
    record_event(conn, alert_id, "resolved", None, text, now)


def open_for_dependencies(conn: Connection) -> list[OpenAlert]:
    """Firing alerts (id, device_id, rule, suppressed_by), in one order for every writer (updates queue, no deadlock)."""
    query = select(alerts.c.id, alerts.c.device_id, alerts.c.rule, alerts.c.suppressed_by)
    rows = conn.execute(query.where(alerts.c.status == "firing").order_by(alerts.c.id))
    return [OpenAlert(r.id, r.device_id, r.rule, r.suppressed_by) for r in rows]


def set_suppressed(conn: Connection, alert_id: int, blocker: int | None, now: float) -> None:
    """Hide an alert behind the outage of `blocker` (or show it again), with its history entry."""
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(suppressed_by=blocker, updated_at=now))
    text = f"hidden by the outage of device {blocker}" if blocker else "no longer hidden: the upstream outage ended"
    record_event(conn, alert_id, "suppressed" if blocker else "unsuppressed", None, text, now)


def set_hidden_count(conn: Connection, alert_id: int, count: int, now: float) -> None:
    """How many alerts an outage's own alert hides."""
    conn.execute(update(alerts).where(alerts.c.id == alert_id, alerts.c.hidden != count).values(hidden=count, updated_at=now))


def stale_firing(conn: Connection, rule: str, before: float) -> list[int]:
    """Ids of firing alerts of a rule not updated since `before` (one-off event alerts nobody repeated)."""
    query = select(alerts.c.id).where(alerts.c.rule == rule, alerts.c.status == "firing", alerts.c.updated_at < before)
    return [int(i) for i in conn.execute(query).scalars()]


def device_id_named(conn: Connection, name: str) -> int | None:
    """The id of the device with this name, or None."""
    found = conn.execute(select(devices.c.id).where(devices.c.name == name)).scalar()
    return None if found is None else int(found)
