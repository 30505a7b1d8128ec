"""Device families as data: one YAML file per vendor/OS family says how to recognise it, its kind, and its MIBs.

The built-in files live in agents/families/; a user adds a family by dropping a file into a folder named by
POCKETNOC_FAMILIES_DIR (a file there with a built-in's name replaces it). Every file is validated when
loaded: a wrong field names the file and the field, never a traceback. Matching runs once per device
(on its first poll); the chosen family only adds OIDs to the cached poll plan.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import yaml

from agents.profiles import DETECT_PROBES, KINDS, OPTIONAL_PROFILES, PROFILES, DeviceFacts, Profile, detect_kind

BUILTIN_DIR: Final = Path(__file__).parent / "families"
ENV_DIR: Final = "POCKETNOC_FAMILIES_DIR"
# Kinds a family may give: a device kind (not generic), or "network", which lets the sysServices/bridge/forwarding
# rules pick switch or router.
FAMILY_KINDS: Final = ("network", *(kind for kind in KINDS if kind != "generic"))
_OID: Final = re.compile(r"^1(\.\d+)+$")
_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
AGGREGATES: Final = ("avg", "max", "sum")
RUNTIME_UNITS: Final = ("ticks", "seconds", "minutes")
# What each section may hold: metric name -> whether it is a value read by GET/walk.
SECTIONS: Final[dict[str, tuple[str, ...]]] = {
    "cpu": ("load",),
    "memory": ("used_pct", "used", "free", "total"),
    "storage": ("descr", "size", "used", "free"),
    "battery": ("charge_pct", "runtime", "load_pct"),
}
HARDWARE_FIELDS: Final = ("model", "serial", "firmware")


class FamilyError(ValueError):
    """A family file is not valid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One value a family reads: a scalar (GET each poll) or a column (walked each poll, then aggregated)."""

    oid: str
    column: bool
    pattern: re.Pattern[str] | None = None  # pulls a number out of a text value ("300 Secs ( 14.35%)")
    aggregate: str = "avg"
    scale: float = 1.0
    unit: str = ""  # battery runtime: ticks, seconds or minutes


@dataclass(frozen=True, slots=True)
class Match:
    """One way to recognise a family: every criterion given must hold."""

    object_id: tuple[str, ...] = ()
    descr: tuple[re.Pattern[str], ...] = ()
    probe: tuple[str, ...] = ()  # GETNEXT subtrees asked on the first poll: an answer in any one holds


@dataclass(frozen=True, slots=True)
class Family:
    """A vendor/OS family: how to recognise it, its kind, and where its CPU, memory, storage, battery and hardware are."""

    name: str
    title: str
    kind: str
    priority: int
    matches: tuple[Match, ...]
    metrics: Mapping[str, Metric] = field(default_factory=dict)  # "cpu.load", "memory.used", ...
    units: Mapping[str, int] = field(default_factory=dict)  # section -> bytes per unit (memory, storage)
    hardware: Mapping[str, str] = field(default_factory=dict)  # model/serial/firmware -> OID (read once)
    source: str = ""

    @property
    def probes(self) -> tuple[str, ...]:
        return tuple(p for m in self.matches for p in m.probe)

    def profile(self) -> Profile | None:
        """The OIDs this family adds to every poll, as a profile named after it (None when it adds none)."""
        scalars = {field_name(k): m.oid for k, m in self.metrics.items() if not m.column}
        columns = {field_name(k): m.oid for k, m in self.metrics.items() if m.column}
        if not scalars and not columns:
            return None
        return Profile(self.name, scalars=scalars, columns=columns)


def field_name(metric: str) -> str:
    """The reading field of a family metric: "cpu.load" -> "fam_cpu_load"."""
    return "fam_" + metric.replace(".", "_")


def _fail(source: str, where: str, why: str) -> FamilyError:
    return FamilyError(f"{source}: {where}: {why}")


def _oid(source: str, where: str, value: object) -> str:
    text = str(value).strip().lstrip(".") if isinstance(value, (str, int, float)) else ""
    if not _OID.match(text):
        raise _fail(source, where, f"not a numeric OID: {value!r}")
    return text


def _strings(source: str, where: str, value: object) -> list[str]:
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return [str(v) for v in value]
    raise _fail(source, where, "give a text or a list of texts")


def _regex(source: str, where: str, text: str) -> re.Pattern[str]:
    try:
        return re.compile(text, re.IGNORECASE)
    except re.error as exc:
        raise _fail(source, where, f"bad pattern {text!r}: {exc}") from None


def _match(source: str, where: str, raw: object) -> Match:
    if not isinstance(raw, dict):
        raise _fail(source, where, "give object_id, descr and/or probe")
    unknown = set(raw) - {"object_id", "descr", "probe"}
    if unknown or not raw:
        raise _fail(source, where, f"unknown or missing keys {sorted(unknown) or '(none)'}: use object_id, descr, probe")

    def items(key: str) -> list[str]:
        return _strings(source, f"{where}.{key}", raw.get(key, []))

    return Match(
        object_id=tuple(_oid(source, f"{where}.object_id", v) for v in items("object_id")),
        descr=tuple(_regex(source, f"{where}.descr", v) for v in items("descr")),
        probe=tuple(_oid(source, f"{where}.probe", v) for v in items("probe")),
    )


def _metric(source: str, where: str, raw: object) -> Metric:
    if isinstance(raw, str):
        raw = {"scalar": raw}
    if not isinstance(raw, dict) or ("scalar" in raw) == ("column" in raw):
        raise _fail(source, where, "give exactly one of scalar: OID or column: OID")
    unknown = set(raw) - {"scalar", "column", "pattern", "aggregate", "scale", "unit"}
    if unknown:
        raise _fail(source, where, f"unknown keys {sorted(unknown)}")
    aggregate = str(raw.get("aggregate", "avg"))
    if aggregate not in AGGREGATES:
        raise _fail(source, f"{where}.aggregate", f"use one of {AGGREGATES}")
    unit = str(raw.get("unit", ""))
    if unit and unit not in RUNTIME_UNITS:
        raise _fail(source, f"{where}.unit", f"use one of {RUNTIME_UNITS}")
    scale = raw.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
        raise _fail(source, f"{where}.scale", "give a positive number")
    pattern = raw.get("pattern")
    compiled = _regex(source, f"{where}.pattern", str(pattern)) if pattern is not None else None
    if compiled is not None and compiled.groups != 1:
        raise _fail(source, f"{where}.pattern", "needs exactly one (group) around the number")
    is_column = "column" in raw
    return Metric(
        _oid(source, where, raw["column" if is_column else "scalar"]), is_column, compiled, aggregate, float(scale), unit
    )


def parse_family(raw: object, source: str) -> Family:
    """Validate one family document; FamilyError names the file and the field that is wrong."""
    if not isinstance(raw, dict):
        raise _fail(source, "top level", "a family file is a mapping (name, kind, match, ...)")
    known = {"name", "title", "kind", "priority", "match", "hardware", *SECTIONS}
    unknown = set(raw) - known
    if unknown:
        raise _fail(source, "top level", f"unknown keys {sorted(unknown)}; known: {sorted(known)}")
    name = str(raw.get("name", ""))
    if not _NAME.match(name):
        raise _fail(source, "name", "lower-case letters, digits and '-', up to 40 characters")
    kind = str(raw.get("kind", ""))
    if kind not in FAMILY_KINDS:
        raise _fail(source, "kind", f"use one of {FAMILY_KINDS}")
    priority = raw.get("priority", 50)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise _fail(source, "priority", "give a whole number (lower is tried first)")
    raw_matches = raw.get("match")
    raw_matches = raw_matches if isinstance(raw_matches, list) else [raw_matches]
    matches = tuple(_match(source, f"match[{i}]", m) for i, m in enumerate(raw_matches))
    metrics: dict[str, Metric] = {}
    units: dict[str, int] = {}
    for section, names in SECTIONS.items():
        body = raw.get(section)
        if body is None:
            continue
        if not isinstance(body, dict):
            raise _fail(source, section, f"a mapping of {names}")
        for key, value in body.items():
            if key == "units" and section in ("memory", "storage"):
                if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                    raise _fail(source, f"{section}.units", "bytes per unit, a positive whole number")
                units[section] = value
                continue
            if key not in names:
                raise _fail(source, f"{section}.{key}", f"unknown; use {names}")
            metrics[f"{section}.{key}"] = _metric(source, f"{section}.{key}", value)
    hardware_raw = raw.get("hardware") or {}
    if not isinstance(hardware_raw, dict) or set(hardware_raw) - set(HARDWARE_FIELDS):
        raise _fail(source, "hardware", f"a mapping of {HARDWARE_FIELDS} to OIDs")
    hardware = {k: _oid(source, f"hardware.{k}", v) for k, v in hardware_raw.items()}
    return Family(name, str(raw.get("title") or name), kind, priority, matches, metrics, units, hardware, source)


def _files(dirs: Iterable[Path]) -> dict[str, Path]:
    """Family files by file name; a later folder's file replaces an earlier one of the same name."""
    found: dict[str, Path] = {}
    for folder in dirs:
        if not folder.is_dir():
            raise FamilyError(f"{folder}: families folder not found")
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            found[path.stem] = path
    return found


def load_families(extra_dirs: Iterable[Path] | None = None) -> tuple[Family, ...]:
    """Load and validate the built-in families and the user's (POCKETNOC_FAMILIES_DIR), most specific first."""
    dirs = [BUILTIN_DIR]
    if extra_dirs is None:
        env = os.environ.get(ENV_DIR, "")
        extra_dirs = [Path(p) for p in env.split(os.pathsep) if p.strip()]
    dirs += list(extra_dirs)
    families: dict[str, Family] = {}
    for path in _files(dirs).values():
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise FamilyError(f"{path}: cannot read: {exc}") from None
        family = parse_family(raw, str(path))
        families[family.name] = family
    return tuple(sorted(families.values(), key=lambda f: (f.priority, f.name)))


def _holds(match: Match, object_id: str, descr: str, answered: frozenset[str]) -> bool:
    oid = object_id + "."
    return (
        (not match.object_id or any(oid.startswith(p + ".") for p in match.object_id))
        and (not match.descr or any(p.search(descr) for p in match.descr))
        and (not match.probe or any(p in answered for p in match.probe))
    )


def match_family(families: Iterable[Family], object_id: str, descr: str, answered: frozenset[str]) -> Family | None:
    """The first family (by priority) one of whose matches holds; `answered` holds the probe OIDs that answered."""
    for family in families:
        if any(_holds(m, object_id, descr, answered) for m in family.matches):
            return family
    return None


@functools.cache
def _cached(env: str) -> tuple[Family, ...]:
    return load_families()


def load_families_cached() -> tuple[Family, ...]:
    """load_families() once per POCKETNOC_FAMILIES_DIR value (collectors are created per worker and per test)."""
    return _cached(os.environ.get(ENV_DIR, ""))


def detection_probes(families: Iterable[Family]) -> dict[str, str]:
    """Subtrees asked once (GETNEXT) to tell kinds apart: OID -> profile name, DETECT_PROBES name or "probe:OID"."""
    probes = {oid: name for name in OPTIONAL_PROFILES for oid in PROFILES[name].probes}
    probes.update({oid: name for name, oid in DETECT_PROBES.items()})
    probes.update({oid: f"probe:{oid}" for family in families for oid in family.probes})
    return probes


def facts_of(scalars: Mapping[str, object], answered: frozenset[str]) -> DeviceFacts:
    """What detection looks at, from the system and detection scalars read and the probes that answered."""

    def number(name: str) -> int | None:
        value = scalars.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return DeviceFacts(
        sys_object_id=str(scalars.get("sys_object_id") or ""),
        sys_descr=str(scalars.get("sys_descr") or ""),
        sys_services=number("sys_services"),
        if_number=number("if_number"),
        bridge_ports=number("bridge_ports"),
        ip_forwarding=number("ip_forwarding"),
        answered=answered,
    )


def family_of(families: Iterable[Family], facts: DeviceFacts) -> Family | None:
    """The family that matches the facts (its probe matches count the "probe:OID" names that answered)."""
    probed = frozenset(name.removeprefix("probe:") for name in facts.answered if name.startswith("probe:"))
    return match_family(families, facts.sys_object_id, facts.sys_descr, probed)


def family_kind(family: Family | None, facts: DeviceFacts) -> str:
    """The family's kind; "network" (or no family) lets the detection rules decide, a network family never stays generic."""
    ruled = detect_kind(facts)
    if family is None:
        return ruled
    if family.kind != "network":
        return family.kind
    if ruled in ("switch", "router"):
        return ruled
    return "router" if facts.ip_forwarding == 1 else "switch"
