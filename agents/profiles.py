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


SYSTEM: Final = Profile(
    "system",
    scalars={
        "sys_descr": "1.3.6.1.2.1.1.1.0",
        "sys_object_id": "1.3.6.1.2.1.1.2.0",
        "sys_uptime": "1.3.6.1.2.1.1.3.0",
        "sys_contact": "1.3.6.1.2.1.1.4.0",
        "sys_name": "1.3.6.1.2.1.1.5.0",
        "sys_location": "1.3.6.1.2.1.1.6.0",
    },
)

_IF = "1.3.6.1.2.1.2.2.1."
_IFX = "1.3.6.1.2.1.31.1.1.1."
INTERFACES: Final = Profile(
    "if",
    columns={
        "descr": _IF + "2",
        "type": _IF + "3",
        "mtu": _IF + "4",
        "speed": _IF + "5",
        "phys_address": _IF + "6",
        "admin_status": _IF + "7",
        "oper_status": _IF + "8",
        "last_change": _IF + "9",
        "in_octets": _IF + "10",
        "in_discards": _IF + "13",
        "in_errors": _IF + "14",
        "out_octets": _IF + "16",
        "out_discards": _IF + "19",
        "out_errors": _IF + "20",
        "name": _IFX + "1",
        "hc_in_octets": _IFX + "6",
        "hc_out_octets": _IFX + "10",
        "high_speed": _IFX + "15",
        "alias": _IFX + "18",
        "ip_if_index": "1.3.6.1.2.1.4.20.1.2",  # IP-MIB ipAdEntIfIndex: which port holds which address
    },
    binary=frozenset({"phys_address"}),
    probes=(_IF + "2", _IF + "8", _IFX + "1"),  # the real columns: many agents omit ifIndex itself
    static=frozenset({"descr", "type", "mtu", "speed", "phys_address", "name", "alias", "high_speed", "ip_if_index"}),
    rows=("oper_status", "descr"),
    refresh_on=frozenset({"last_change"}),  # a link flap can renegotiate the speed
)
# ifXTable columns, and the 32-bit octet columns that HC counters replace once seen.
IFX_FIELDS: Final = frozenset({"name", "hc_in_octets", "hc_out_octets", "high_speed", "alias"})
OCTETS32_FIELDS: Final = frozenset({"in_octets", "out_octets"})
HC_FIELDS: Final = frozenset({"hc_in_octets", "hc_out_octets"})

HOST: Final = Profile(
    "host",
    scalars={"hr_system_uptime": "1.3.6.1.2.1.25.1.1.0"},
    columns={
        "storage_type": "1.3.6.1.2.1.25.2.3.1.2",
        "storage_descr": "1.3.6.1.2.1.25.2.3.1.3",
        "storage_units": "1.3.6.1.2.1.25.2.3.1.4",
        "storage_size": "1.3.6.1.2.1.25.2.3.1.5",
        "storage_used": "1.3.6.1.2.1.25.2.3.1.6",
        "processor_load": "1.3.6.1.2.1.25.3.3.1.2",
    },
    probes=("1.3.6.1.2.1.25.2.3.1.2", "1.3.6.1.2.1.25.3.3.1.2"),
    static=frozenset({"storage_type", "storage_descr", "storage_units"}),
    rows=("storage_used", "storage_descr"),
)

_UCD = "1.3.6.1.4.1.2021."
UCD: Final = Profile(
    "ucd",
    scalars={
        "la_load_1": _UCD + "10.1.3.1",
        "la_load_5": _UCD + "10.1.3.2",
        "la_load_15": _UCD + "10.1.3.3",
        "mem_total_swap": _UCD + "4.3.0",
        "mem_avail_swap": _UCD + "4.4.0",
        "mem_total_real": _UCD + "4.5.0",
        "mem_avail_real": _UCD + "4.6.0",
        "mem_buffer": _UCD + "4.14.0",
        "mem_cached": _UCD + "4.15.0",
        "ss_cpu_idle": _UCD + "11.11.0",
    },
    probes=(_UCD + "4.5", _UCD + "10.1.3"),
)

_UPS = "1.3.6.1.2.1.33.1."
UPS: Final = Profile(
    "ups",
    scalars={
        "battery_status": _UPS + "2.1.0",
        "seconds_on_battery": _UPS + "2.2.0",
        "minutes_remaining": _UPS + "2.3.0",
        "charge_remaining": _UPS + "2.4.0",
        "output_source": _UPS + "4.1.0",
    },
    columns={"output_load": _UPS + "4.4.1.5"},
    probes=(_UPS + "2.1",),
)

_SUPPLY = "1.3.6.1.2.1.43.11.1.1."
PRINTER: Final = Profile(
    "printer",
    columns={
        "supply_type": _SUPPLY + "5",
        "supply_descr": _SUPPLY + "6",
        "supply_max": _SUPPLY + "8",
        "supply_level": _SUPPLY + "9",
        "printer_status": "1.3.6.1.2.1.25.3.5.1.1",
    },
    probes=("1.3.6.1.2.1.43.11.1.1", "1.3.6.1.2.1.43.5.1.1"),  # Printer-MIB supplies or general
    static=frozenset({"supply_type", "supply_descr", "supply_max"}),
    rows=("supply_level", "supply_descr"),
)

# ENTITY-SENSOR-MIB (RFC 3433) and CISCO-ENTITY-SENSOR-MIB share one row layout; Cisco adds thresholds.
_ENT_NAME = "1.3.6.1.2.1.47.1.1.1.1.7"  # entPhysicalName, same index as the sensor
_SENSOR = "1.3.6.1.2.1.99.1.1.1."
SENSORS: Final = Profile(
    "sensors",
    columns={
        "sensor_type": _SENSOR + "1",
        "sensor_scale": _SENSOR + "2",
        "sensor_precision": _SENSOR + "3",
        "sensor_value": _SENSOR + "4",
        "sensor_status": _SENSOR + "5",
        "sensor_entity_name": _ENT_NAME,
    },
    probes=(_SENSOR + "4",),
    static=frozenset({"sensor_type", "sensor_scale", "sensor_precision", "sensor_entity_name"}),
    rows=("sensor_value", "sensor_type"),
)
_CSENSOR, _CTHRESHOLD = "1.3.6.1.4.1.9.9.91.1.1.1.1.", "1.3.6.1.4.1.9.9.91.1.2.1.1."
CISCO_SENSORS: Final = Profile(
    "cisco_sensors",
    columns={
        "csensor_type": _CSENSOR + "1",
        "csensor_scale": _CSENSOR + "2",
        "csensor_precision": _CSENSOR + "3",
        "csensor_value": _CSENSOR + "4",
        "csensor_status": _CSENSOR + "5",
        "csensor_entity_name": _ENT_NAME,
        "csensor_threshold_severity": _CTHRESHOLD + "2",
        "csensor_threshold_relation": _CTHRESHOLD + "3",
        "csensor_threshold_value": _CTHRESHOLD + "4",
        "csensor_threshold_crossed": _CTHRESHOLD + "5",
    },
    probes=(_CSENSOR + "4",),
    static=frozenset(
        {
            "csensor_type",
            "csensor_scale",
            "csensor_precision",
            "csensor_entity_name",
            "csensor_threshold_severity",
            "csensor_threshold_relation",
            "csensor_threshold_value",
        }
    ),
    rows=("csensor_value", "csensor_type"),
)

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
