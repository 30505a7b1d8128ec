"""What to collect per device kind, as data: numeric OIDs per profile and the kind-detection table."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final


@dataclass(frozen=True, slots=True)
class Profile:
    """A named set of scalars (GET each poll) and table columns (walked each poll), by field name."""

    name: str
    scalars: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)
    binary: frozenset[str] = frozenset()  # column fields rendered as hex (PhysAddress)
    probes: tuple[str, ...] = ()  # GETNEXT subtrees: an answer inside any of them means "applies"
    # Columns that rarely change: cached and walked again only when stale or when the rows change.
    static: frozenset[str] = frozenset()
    rows: tuple[str, str] | None = None  # (dynamic, static) columns of one table: their indexes must agree
    refresh_on: frozenset[str] = frozenset()  # dynamic columns whose change may change static ones


def _arcs(entry: str, **arcs: int | str) -> dict[str, str]:
    """The fields of one MIB subtree, in order: each field's OID is the subtree's plus its arc(s)."""
    return {name: f"{entry}.{arc}" for name, arc in arcs.items()}


SYSTEM: Final = Profile(
    "system",
    scalars=_arcs("1.3.6.1.2.1.1", sys_descr="1.0", sys_object_id="2.0", sys_uptime="3.0", sys_contact="4.0",
                  sys_name="5.0", sys_location="6.0"),
)  # fmt: skip

_IF = "1.3.6.1.2.1.2.2.1"
_IF_COLUMNS: Final = _arcs(
    _IF, descr=2, type=3, mtu=4, speed=5, phys_address=6, admin_status=7, oper_status=8, last_change=9, in_octets=10,
    in_discards=13, in_errors=14, out_octets=16, out_discards=19, out_errors=20,
)  # fmt: skip
_IFX = "1.3.6.1.2.1.31.1.1.1"
_IFX_COLUMNS: Final = _arcs(_IFX, name=1, hc_in_octets=6, hc_out_octets=10, high_speed=15, alias=18)
INTERFACES: Final = Profile(
    "if",
    columns=_IF_COLUMNS | _IFX_COLUMNS | {"ip_if_index": "1.3.6.1.2.1.4.20.1.2"},  # IP-MIB: which port holds which address
    binary=frozenset({"phys_address"}),
    probes=(f"{_IF}.2", f"{_IF}.8", f"{_IFX}.1"),  # the real columns: many agents omit ifIndex itself
    static=frozenset({"descr", "type", "mtu", "speed", "phys_address", "name", "alias", "high_speed", "ip_if_index"}),
    rows=("oper_status", "descr"),
    refresh_on=frozenset({"last_change"}),  # a link flap can renegotiate the speed
)
# ifXTable columns, and the 32-bit octet columns that HC counters replace once seen.
IFX_FIELDS: Final = frozenset(_IFX_COLUMNS)
OCTETS32_FIELDS: Final = frozenset({"in_octets", "out_octets"})
HC_FIELDS: Final = frozenset({"hc_in_octets", "hc_out_octets"})

_HR_STORAGE, _HR_PROCESSOR = "1.3.6.1.2.1.25.2.3.1", "1.3.6.1.2.1.25.3.3.1"
HOST: Final = Profile(
    "host",
    scalars={"hr_system_uptime": "1.3.6.1.2.1.25.1.1.0"},
    columns=_arcs(_HR_STORAGE, storage_type=2, storage_descr=3, storage_units=4, storage_size=5, storage_used=6)
    | _arcs(_HR_PROCESSOR, processor_load=2),
    probes=(f"{_HR_STORAGE}.2", f"{_HR_PROCESSOR}.2"),
    static=frozenset({"storage_type", "storage_descr", "storage_units"}),
    rows=("storage_used", "storage_descr"),
)

_UCD = "1.3.6.1.4.1.2021"
UCD: Final = Profile(
    "ucd",
    scalars=_arcs(_UCD, la_load_1="10.1.3.1", la_load_5="10.1.3.2", la_load_15="10.1.3.3", mem_total_swap="4.3.0",
                  mem_avail_swap="4.4.0", mem_total_real="4.5.0", mem_avail_real="4.6.0", mem_buffer="4.14.0",
                  mem_cached="4.15.0", ss_cpu_idle="11.11.0"),
    probes=(f"{_UCD}.4.5", f"{_UCD}.10.1.3"),
)  # fmt: skip

_UPS = "1.3.6.1.2.1.33.1"
UPS: Final = Profile(
    "ups",
    scalars=_arcs(_UPS, battery_status="2.1.0", seconds_on_battery="2.2.0", minutes_remaining="2.3.0",
                  charge_remaining="2.4.0", output_source="4.1.0"),
    columns={"output_load": f"{_UPS}.4.4.1.5"},
    probes=(f"{_UPS}.2.1",),
)  # fmt: skip

_SUPPLY = "1.3.6.1.2.1.43.11.1.1"
PRINTER: Final = Profile(
    "printer",
    columns=_arcs(_SUPPLY, supply_type=5, supply_descr=6, supply_max=8, supply_level=9)
    | {"printer_status": "1.3.6.1.2.1.25.3.5.1.1"},
    probes=(_SUPPLY, "1.3.6.1.2.1.43.5.1.1"),  # Printer-MIB supplies or general
    static=frozenset({"supply_type", "supply_descr", "supply_max"}),
    rows=("supply_level", "supply_descr"),
)


_SENSOR_FIELDS: Final = ("type", "scale", "precision", "value", "status")


def _sensor_profile(name: str, prefix: str, entry: str, thresholds: Mapping[str, str] | None = None) -> Profile:
    """ENTITY-SENSOR-MIB's row (RFC 3433), which CISCO-ENTITY-SENSOR-MIB shares: fields `<prefix>_type`, `_scale`,
    `_precision`, `_value`, `_status` (columns 1-5) and `_entity_name` (entPhysicalName, same index as the sensor)."""
    columns = _arcs(entry, **{f"{prefix}_{field}": arc for arc, field in enumerate(_SENSOR_FIELDS, 1)})
    columns[f"{prefix}_entity_name"] = "1.3.6.1.2.1.47.1.1.1.1.7"
    static = {f"{prefix}_{field}" for field in ("type", "scale", "precision", "entity_name")}
    static |= {field for field in thresholds or {} if not field.endswith("_crossed")}  # set, not measured
    return Profile(name, columns=columns | dict(thresholds or {}), probes=(f"{entry}.4",), static=frozenset(static),
                   rows=(f"{prefix}_value", f"{prefix}_type"))  # fmt: skip


SENSORS: Final = _sensor_profile("sensors", "sensor", "1.3.6.1.2.1.99.1.1.1")
# Cisco adds thresholds (ciscoEntSensorThresholdTable) to the same row layout.
CISCO_SENSORS: Final = _sensor_profile(
    "cisco_sensors",
    "csensor",
    "1.3.6.1.4.1.9.9.91.1.1.1.1",
    _arcs("1.3.6.1.4.1.9.9.91.1.2.1.1", csensor_threshold_severity=2, csensor_threshold_relation=3,
          csensor_threshold_value=4, csensor_threshold_crossed=5),
)  # fmt: skip

PROFILES: Final[dict[str, Profile]] = {p.name: p for p in (SYSTEM, INTERFACES, HOST, UCD, UPS, PRINTER, SENSORS, CISCO_SENSORS)}
OPTIONAL_PROFILES: Final = ("if", "host", "ucd", "ups", "printer", "sensors", "cisco_sensors")

# Scalars read once, on the first poll, only to tell device kinds apart.
DETECT_SCALARS: Final[dict[str, str]] = {
    "sys_services": "1.3.6.1.2.1.1.7.0",
    "if_number": "1.3.6.1.2.1.2.1.0",
    "bridge_ports": "1.3.6.1.2.1.17.1.2.0",
    "ip_forwarding": "1.3.6.1.2.1.4.1.0",
}

# Subtrees probed on the first poll only to tell kinds apart (a host with a printer attached
# has hrPrinterStatus rows but is not itself a printer unless nothing else matches first).
DETECT_PROBES: Final[dict[str, str]] = {"hr_printer": "1.3.6.1.2.1.25.3.5.1.1"}

KINDS: Final = (
    "switch",
    "router",
    "linux",
    "windows",
    "ups",
    "printer",
    "firewall",
    "wireless",
    "storage",
    "hypervisor",
    "oob",
    "server",
    "generic",
)
KIND_PROFILES: Final[dict[str, tuple[str, ...]]] = {
    "switch": ("system", "if"),
    "router": ("system", "if"),
    "linux": ("system", "if", "host", "ucd"),
    "windows": ("system", "if", "host"),
    "ups": ("system", "if", "ups"),
    "printer": ("system", "if", "host", "printer"),
    "firewall": ("system", "if", "host"),
    "wireless": ("system", "if", "host"),
    "storage": ("system", "if", "host", "ucd"),
    "hypervisor": ("system", "if", "host"),
    "oob": ("system", "if"),
    "server": ("system", "if", "host", "ucd"),
    "generic": ("system", "if"),
}

# sysServices bits (RFC 3418): layer L is 2**(L-1).
LAYER2: Final = 0x02
LAYER3: Final = 0x04


@dataclass(frozen=True, slots=True)
class KindRule:
    """One row of the detection table: every criterion given must hold."""

    kind: str
    object_id: tuple[str, ...] = ()  # sysObjectID starts with one of these
    descr: str | None = None  # sysDescr matches (search, case-insensitive)
    profile: str | None = None  # this optional profile (or DETECT_PROBES name) answered its probe
    services: int = 0  # all these sysServices bits are set
    min_ports: int = 0  # ifNumber at least
    min_bridge_ports: int = 0  # BRIDGE-MIB dot1dBaseNumPorts at least
    forwarding: bool = False  # ipForwarding is forwarding(1)


# First matching row wins; no match means "generic".
KIND_RULES: Final[tuple[KindRule, ...]] = (
    KindRule("windows", object_id=("1.3.6.1.4.1.311.",)),
    KindRule("windows", descr=r"\bWindows\b"),
    KindRule("ups", profile="ups"),
    KindRule("ups", object_id=("1.3.6.1.4.1.318.", "1.3.6.1.4.1.534.", "1.3.6.1.4.1.705.")),
    KindRule("printer", profile="printer"),
    KindRule("linux", object_id=("1.3.6.1.4.1.8072.3.2.10",)),
    KindRule("linux", descr=r"^Linux\b"),
    KindRule("printer", profile="hr_printer"),
    # MikroTik (enterprise 14988): a CRS is a switch; any other RouterOS box routes, even with a LAN bridge
    # of many ports (which the bridge-port rule below would call a switch).
    KindRule("switch", object_id=("1.3.6.1.4.1.14988.",), descr=r"\bCRS\d"),
    KindRule("router", object_id=("1.3.6.1.4.1.14988.",)),
    KindRule("router", descr=r"\bRouterOS\b"),
    KindRule("switch", min_bridge_ports=8),
    KindRule("switch", services=LAYER2, min_ports=8),
    KindRule("router", forwarding=True),
    KindRule("router", services=LAYER3),
)


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What detection looks at: system scalars, detection scalars and which profiles answered."""

    sys_object_id: str = ""
    sys_descr: str = ""
    sys_services: int | None = None
    if_number: int | None = None
    bridge_ports: int | None = None
    ip_forwarding: int | None = None
    answered: frozenset[str] = frozenset()


def _matches(rule: KindRule, facts: DeviceFacts) -> bool:
    oid = facts.sys_object_id + "."  # so "…8072.3.2.10" does not match "…8072.3.2.100"
    checks = (
        not rule.object_id or any(oid.startswith(p if p.endswith(".") else p + ".") for p in rule.object_id),
        rule.descr is None or re.search(rule.descr, facts.sys_descr, re.IGNORECASE) is not None,
        rule.profile is None or rule.profile in facts.answered,
        not rule.services or (facts.sys_services or 0) & rule.services == rule.services,
        not rule.min_ports or (facts.if_number or 0) >= rule.min_ports,
        not rule.min_bridge_ports or (facts.bridge_ports or 0) >= rule.min_bridge_ports,
        not rule.forwarding or facts.ip_forwarding == 1,
    )
    return all(checks)


def detect_kind(facts: DeviceFacts, rules: tuple[KindRule, ...] = KIND_RULES) -> str:
    """Pick the device kind from the first matching rule, or "generic"."""
    for rule in rules:
        if _matches(rule, facts):
            return rule.kind
    return "generic"


def choose_profiles(answered: frozenset[str]) -> tuple[str, ...]:
    """System always, then every optional profile whose probe answered, in a stable order."""
    return ("system", *(name for name in OPTIONAL_PROFILES if name in answered))


def resolve_override(profile: str) -> tuple[str | None, tuple[str, ...]]:
    """Turn a profile argument into (kind or None, profiles): a kind name or a "if,host" list."""
    name = profile.strip().lower()
    if name in KIND_PROFILES:
        return name, KIND_PROFILES[name]
    names = [p.strip() for p in re.split(r"[,+ ]+", name) if p.strip()]
    unknown = [p for p in names if p not in PROFILES]
    if unknown or not names:
        raise ValueError(f"unknown SNMP profile {profile!r}: use a kind {KINDS} or profiles {tuple(PROFILES)}")
    return None, ("system", *(p for p in OPTIONAL_PROFILES if p in names))
