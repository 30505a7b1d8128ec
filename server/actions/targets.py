"""Things on a device an action can name (a port, a disk, a file system, a service), chosen from what the device has.

Each target type reads one table of the device's last poll and lists its rows by name with their state, so a
form offers "Gi1/0/17 · down · uplink to core" instead of a number to type; the one a device is managed through,
and its uplink to its parent, are marked dangerous.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.actions.template import ParamValue

INTEGER_TARGETS = frozenset({"interface", "storage"})  # their value is an SNMP index: may go into an OID
NEAR_FULL_PCT = 90.0


@dataclass(frozen=True, slots=True)
class Choice:
    """One thing on the device: the value a run uses, its name, its state, a note, and why it is dangerous."""

    value: ParamValue
    name: str
    state: str
    note: str = ""
    danger: str = ""  # e.g. "pocketnoc manages sw1 through this port"; empty when it is not dangerous
    problem: bool = False  # down, failed or near full: listed first

    @property
    def label(self) -> str:
        """What a form and a preview show: 'Gi1/0/17 · down · uplink to core'."""
        parts = [self.name, self.state] + ([self.note] if self.note else [])
        return " · ".join(p for p in parts if p) + (f" · ⚠ {self.danger}" if self.danger else "")

    def public(self) -> dict[str, Any]:
        """The choice as the API shows it."""
        return {"value": self.value, "name": self.name, "state": self.state, "note": self.note,
                "label": self.label, "dangerous": bool(self.danger), "danger": self.danger}  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the target lists need to know of a device: its name, address, parent's name, config and last tables."""

    name: str
    address: str
    parent: str | None
    tables: Mapping[str, Any]
    management_interface: str | None = None  # named in the inventory (ports.management)
    uplink_interface: str | None = None  # named in the inventory (ports.uplink)


def _rows(device: DeviceView, table: str) -> list[dict[str, Any]]:
    return [r for r in device.tables.get(table) or [] if isinstance(r, dict)]


def _iface_state(row: Mapping[str, Any]) -> str:
    if row.get("admin") == "down":
        return "admin down"
    return str(row.get("oper") or "unknown")


def management_index(device: DeviceView) -> int | None:
    """The ifIndex holding the polled address (IP-MIB ipAddrTable), else the one the inventory names, else None."""
    for entry in _rows(device, "ip_addresses"):
        if entry.get("address") == device.address and isinstance(entry.get("if_index"), int):
            return int(entry["if_index"])
    wanted = device.management_interface
    for row in _rows(device, "interfaces"):
        if wanted and wanted in (row.get("name"), row.get("descr")):
            return int(row["index"])
    return None


def _is_uplink(device: DeviceView, row: Mapping[str, Any]) -> bool:
    if device.uplink_interface:
        return device.uplink_interface in (row.get("name"), row.get("descr"))
    alias = str(row.get("alias") or "").lower()
    return bool(device.parent) and str(device.parent).lower() in alias


def interfaces(device: DeviceView) -> list[Choice]:
    """The device's interfaces by name and state; the management port and the uplink to the parent are dangerous."""
    mgmt = management_index(device)
    out = []
    for row in _rows(device, "interfaces"):
        if not isinstance(row.get("index"), int):
            continue
        danger = ""
        if row["index"] == mgmt:
            danger = f"pocketnoc manages {device.name} through this port"
        elif _is_uplink(device, row):
            danger = f"uplink to {device.parent}" if device.parent else "the uplink"
        name = str(row.get("name") or row.get("descr") or f"ifIndex {row['index']}")
        state = _iface_state(row)
        problem = state not in ("up", "admin down")
        out.append(Choice(int(row["index"]), name, state, str(row.get("alias") or "")[:60], danger, problem))
    return out


def _pct_state(pct: object) -> str:
    if not isinstance(pct, int | float):
        return "usage unknown"
    return f"{pct:.0f} % full" + (" (near full)" if pct >= NEAR_FULL_PCT else "")


def _full(pct: object) -> bool:
    return isinstance(pct, int | float) and pct >= NEAR_FULL_PCT


def storage(device: DeviceView) -> list[Choice]:
    """HOST-RESOURCES storage (disks, memory) by description and how full it is."""
    return [
        Choice(
            r["index"],
            str(r.get("descr") or r["index"]),
            _pct_state(r.get("used_pct")),
            str(r.get("type") or ""),
            problem=_full(r.get("used_pct")),
        )
        for r in _rows(device, "storage")
        if isinstance(r.get("index"), int)
    ]


def filesystems(device: DeviceView) -> list[Choice]:
    """Mounted file systems (SSH) by mount point and how full they are."""
    return [Choice(str(r["mount"]), str(r["mount"]), _pct_state(r.get("used_pct")), problem=_full(r.get("used_pct")))
            for r in _rows(device, "filesystems")
            if isinstance(r.get("mount"), str)]  # fmt: skip


def services(device: DeviceView) -> list[Choice]:
    """Systemd units the last poll saw failed (SSH), by unit name."""
    return [Choice(str(r["unit"]), str(r["unit"]), str(r.get("active") or "failed"), str(r.get("description") or "")[:60],
                   problem=True)
            for r in _rows(device, "failed_units") if isinstance(r.get("unit"), str)]  # fmt: skip


# One registry: parameter type -> (what it lists, the alert label that names one).
TARGETS: dict[str, tuple[Callable[[DeviceView], list[Choice]], str]] = {
    "interface": (interfaces, "ifIndex"),
    "storage": (storage, "storage"),
    "filesystem": (filesystems, "mount"),
    "service": (services, "unit"),
}


def choices_for(kind: str, device: DeviceView) -> list[Choice]:
    """The things of this kind the device has (problems first: down, errors, near full), or [] if none are known."""
    lister, _label = TARGETS[kind]
    found = lister(device)
    return sorted(found, key=lambda c: not c.problem)


def find(choices: Sequence[Choice], raw: object) -> Choice | None:
    """The choice a raw value names: its value (an ifIndex, given as number or text) or its name."""
    for c in choices:
        if raw == c.value or (isinstance(raw, str) and (raw == str(c.value) or raw == c.name)):
            return c
    return None


def from_labels(kind: str, choices: Sequence[Choice], labels: Mapping[str, str]) -> Choice | None:
    """The choice an alert's labels point at (interface-down carries ifIndex, disk-full its storage ...)."""
    key = TARGETS[kind][1]
    raw = labels.get(key)
    if raw is None and kind == "interface":
        raw = labels.get("ifName")
    return find(choices, raw) if raw is not None else None
