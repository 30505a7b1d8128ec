"""Traps into the store: recorded (known source or not), mapped to devices, raising and clearing alerts."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from agents.traps import Trap
from server.store.alerts import record_event
from server.store.metrics import labels_key
from server.store.schema import alerts, devices, traps

TRAP_ALERT_TTL = 1800.0  # a one-off trap alert resolves by itself after this long without a repeat
TRAP_RETENTION = 7 * 86400
TRAP_SEVERITY = {"coldStart": "warning", "warmStart": "warning", "authenticationFailure": "warning", "linkDown": "warning"}
TRAP_TITLES = {
    "coldStart": "{device} restarted (coldStart trap)",
    "warmStart": "{device} restarted (warmStart trap)",
    "authenticationFailure": "{device} reports an SNMP authentication failure",
}


def _normal(address: str) -> str:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address.lower()


def _open_alert(conn: Connection, rule: str, device_id: int, key: str) -> Any:
    return conn.execute(
        select(alerts.c.id, alerts.c.title)
        .where(alerts.c.rule == rule, alerts.c.device_id == device_id, alerts.c.labels == key, alerts.c.status == "firing")
        .order_by(alerts.c.id.desc())
        .limit(1)
    ).first()


def _fire(conn: Connection, rule: str, device_id: int, key: str, severity: str, title: str, now: float, text: str) -> None:
    found = _open_alert(conn, rule, device_id, key)
    if found is not None:
        conn.execute(update(alerts).where(alerts.c.id == found.id).values(updated_at=now))
        record_event(conn, found.id, "repeated", None, text, now)
        return
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
            rule=rule,
            device_id=device_id,
            labels=key,
            severity=severity,
            title=title[:300],
            status="firing",
            started_at=now,
            episode=episode,
            flapping=False,
            hidden=0,
            updated_at=now,
        )
    )
    alert_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    record_event(conn, alert_id, "fired", None, text, now)


def _resolve(conn: Connection, rule: str, device_id: int, key: str, now: float, text: str) -> None:
    found = _open_alert(conn, rule, device_id, key)
    if found is not None:
        conn.execute(update(alerts).where(alerts.c.id == found.id).values(status="resolved", resolved_at=now, updated_at=now))
        record_event(conn, found.id, "resolved", None, text, now)


def apply_traps(conn: Connection, batch: list[Trap]) -> None:
    """Record traps and turn the meaningful ones into alerts (linkDown/linkUp pair up by ifIndex)."""
    by_address: dict[str, tuple[int, str]] = {}
    for device_id, name, address in conn.execute(select(devices.c.id, devices.c.name, devices.c.address)):
        by_address.setdefault(_normal(address), (device_id, name))
    rows = []
    for trap in batch:
        device = by_address.get(_normal(trap.source))
        rows.append(
            {
                "ts": trap.ts,
                "source": trap.source[:64],
                "device_id": device[0] if device else None,
                "name": trap.name[:64],
                "oid": trap.trap_oid[:256],
                "varbinds": [list(v) for v in trap.varbinds],
            }
        )
        if device is None:
            continue  # unknown sources are recorded (and rate-limited by the receiver), never alerted on
        device_id, device_name = device
        text = f"{trap.name} from {trap.source}\n{trap.varbind_text()}"
        if trap.name in ("linkDown", "linkUp"):
            key = labels_key({"ifIndex": str(trap.if_index)}) if trap.if_index is not None else ""
            label = f"interface {trap.if_index}" if trap.if_index is not None else "an interface"
            if trap.name == "linkDown":
                _fire(
                    conn, "link-down-trap", device_id, key, "warning", f"{device_name}: {label} went down (trap)", trap.ts, text
                )
            else:
                _resolve(conn, "link-down-trap", device_id, key, trap.ts, text)
            continue
        title = TRAP_TITLES.get(trap.name, "{device}: trap " + trap.name).replace("{device}", device_name)
        _fire(
            conn, "trap", device_id, labels_key({"trap": trap.name}), TRAP_SEVERITY.get(trap.name, "info"), title, trap.ts, text
        )
    if rows:
        conn.execute(insert(traps), rows)


def expire_traps(conn: Connection, now: float | None = None) -> None:
    """Resolve one-off trap alerts nobody repeated, and forget old traps."""
    now = time.time() if now is None else now
    stale = conn.execute(
        select(alerts.c.id).where(
            alerts.c.rule == "trap", alerts.c.status == "firing", alerts.c.updated_at < now - TRAP_ALERT_TTL
        )
    ).scalars()
    for alert_id in list(stale):
        conn.execute(update(alerts).where(alerts.c.id == alert_id).values(status="resolved", resolved_at=now, updated_at=now))
        record_event(conn, alert_id, "resolved", None, "no repeat for 30 minutes", now)
    conn.execute(delete(traps).where(traps.c.ts < now - TRAP_RETENTION))


def recent_traps(conn: Connection, device_id: int | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """Newest traps first (unknown sources included when no device is given)."""
    query = select(traps).order_by(traps.c.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(traps.c.device_id == device_id)
    return [dict(r._mapping) for r in conn.execute(query)]
