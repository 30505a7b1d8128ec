"""Traps into the store: recorded (known source or not), mapped to devices, raising and clearing alerts."""

from __future__ import annotations

import dataclasses
import ipaddress
import time
from typing import Any, Literal, NamedTuple

from agents.traps import Trap
from server.store import traps as stored_traps
from server.store.alerts import fire_event_alert, resolve_alert, resolve_event_alert, stale_firing
from server.store.db import Connection
from server.store.metrics import clean_text, labels_key

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
            for device_id, name, address in stored_traps.device_addresses(conn):
                fresh.setdefault(_normal(address), (device_id, name))
            self.map, self.loaded = fresh, now
        return self.map


class Action(NamedTuple):
    """What a trap does to an alert: fire or resolve the alert of (rule, device, label key)."""

    kind: Literal["fire", "resolve"]
    rule: str
    device_id: int
    key: str
    severity: str
    title: str
    ts: float
    text: str


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
        return Action("fire" if trap.name == "linkDown" else "resolve", "link-down-trap", device_id, key, "warning",
                      f"{device_name}: {label} went down (trap)", trap.ts, text)
    title = TRAP_TITLES.get(trap.name, "{device}: trap " + trap.name).replace("{device}", device_name)
    key = labels_key({"trap": trap.name})
    return Action("fire", "trap", device_id, key, TRAP_SEVERITY.get(trap.name, "info"), title, trap.ts, text)


def apply_traps(conn: Connection, batch: list[Trap], addresses: AddressMap) -> None:
    """Record traps and turn the meaningful ones into alerts (linkDown/linkUp pair up by ifIndex).

    Repeats of the same trap within one batch collapse into one alert change (a storm costs one
    write per alert, not one per trap); every trap is still recorded.
    """
    by_address = addresses.get(conn)
    rows: list[stored_traps.NewTrap] = []
    runs: dict[tuple[str, int, str], list[list[Any]]] = {}  # (rule, device, key) -> [[action, count], ...]
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
        seq = runs.setdefault((action.rule, action.device_id, action.key), [])
        if seq and seq[-1][0].kind == action.kind:
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
    stored_traps.record(conn, rows)


def expire_traps(conn: Connection, now: float | None = None) -> None:
    """Resolve one-off trap alerts nobody repeated, and forget old traps."""
    now = time.time() if now is None else now
    for alert_id in stale_firing(conn, "trap", now - TRAP_ALERT_TTL):
        resolve_alert(conn, alert_id, now, "no repeat for 30 minutes")
    stored_traps.prune(conn, now - TRAP_RETENTION)
