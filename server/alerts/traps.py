"""Traps into the store: recorded (known source or not), mapped to devices, raising and clearing alerts."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from agents.traps import Trap
from server.store.alerts import fire_event_alert, record_event, resolve_event_alert
from server.store.metrics import clean_text, labels_key
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


class AddressMap:
    """Device by source address, re-read at most every few seconds (a trap storm must not scan devices per batch)."""

    def __init__(self, ttl: float = 10.0) -> None:
        self.ttl = ttl
        self.loaded = -ttl
        self.map: dict[str, tuple[int, str]] = {}

    def invalidate(self) -> None:
        """Re-read on next use (the inventory changed)."""
        self.loaded = -self.ttl

    def get(self, conn: Connection) -> dict[str, tuple[int, str]]:
        now = time.monotonic()
        if now - self.loaded >= self.ttl:
            fresh: dict[str, tuple[int, str]] = {}
            for device_id, name, address in conn.execute(select(devices.c.id, devices.c.name, devices.c.address)):
                fresh.setdefault(_normal(address), (device_id, name))
            self.map, self.loaded = fresh, now
        return self.map


Action = tuple[str, str, int, str, str, str, float, str]  # kind, rule, device, key, severity, title, ts, text


def storable_trap(trap: Trap) -> Trap:
    """The trap with every device-supplied text made visible (an ESC var-bind is stored as the text \\x1b)."""
    return dataclasses.replace(
        trap, source=clean_text(trap.source), community_or_user=clean_text(trap.community_or_user),
        trap_oid=clean_text(trap.trap_oid), name=clean_text(trap.name),
        varbinds=tuple((clean_text(oid), clean_text(value)) for oid, value in trap.varbinds))


def _action(trap: Trap, device_id: int, device_name: str) -> Action:
    text = f"{trap.name} from {trap.source}\n{trap.varbind_text()}"
    if trap.name in ("linkDown", "linkUp"):
        key = labels_key({"ifIndex": str(trap.if_index)}) if trap.if_index is not None else ""
        label = f"interface {trap.if_index}" if trap.if_index is not None else "an interface"
        kind = "fire" if trap.name == "linkDown" else "resolve"
        return kind, "link-down-trap", device_id, key, "warning", f"{device_name}: {label} went down (trap)", trap.ts, text
    title = TRAP_TITLES.get(trap.name, "{device}: trap " + trap.name).replace("{device}", device_name)
    key = labels_key({"trap": trap.name})
    return "fire", "trap", device_id, key, TRAP_SEVERITY.get(trap.name, "info"), title, trap.ts, text


def apply_traps(conn: Connection, batch: list[Trap], addresses: AddressMap) -> None:
    """Record traps and turn the meaningful ones into alerts (linkDown/linkUp pair up by ifIndex).

    Repeats of the same trap within one batch collapse into one alert change (a storm costs one
    write per alert, not one per trap); every trap is still recorded.
    """
    by_address = addresses.get(conn)
    rows = []
    runs: dict[tuple[str, int, str], list[list[Any]]] = {}
    for raw in batch:
        trap = storable_trap(raw)
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
        action = _action(trap, *device)
        seq = runs.setdefault((action[1], action[2], action[3]), [])
        if seq and seq[-1][0][0] == action[0]:
            seq[-1][1] += 1  # the same change again: count it
        else:
            seq.append([action, 1])
    for seq in runs.values():
        for (kind, rule, device_id, key, severity, title, ts, text), count in seq:
            if count > 1:
                text = f"{text}\n(and {count - 1} more like it)"
            if kind == "fire":
                fire_event_alert(conn, rule, device_id, key, severity, title, ts, text)
            else:
                resolve_event_alert(conn, rule, device_id, key, ts, text)
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
