"""The SNMP collector: detects a device's kind and profiles once, then polls what the profiles name."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from agents.base import CollectError, Reading, SnmpCredentials, Target, Unreachable, register
from agents.profiles import (
    DETECT_SCALARS,
    HC_FIELDS,
    IFX_FIELDS,
    OCTETS32_FIELDS,
    OPTIONAL_PROFILES,
    PROFILES,
    SYSTEM,
    choose_profiles,
    detect_kind,
    resolve_override,
)
from agents.snmp_client import MAX_BYTES, MAX_ROWS, SnmpClient, WalkResult
from agents.snmp_families import Family, detection_probes, facts_of, family_kind, family_of, load_families_cached
from agents.snmp_hardware import read_hardware
from agents.snmp_partial import get_split, next_split, walk_split
from agents.snmp_readings import build_reading
from agents.snmp_values import Value

__all__ = ["SnmpClient", "SnmpCollector", "WalkResult", "snmp_set"]

# Seconds before rarely changing columns (ifDescr, ifAlias, hrStorageDescr, ...) are walked again.
STATIC_MAX_AGE: Final = 600.0
# Asked alone after silence on a bigger GET: if these stay silent too, the device is unreachable.
VITAL: Final = frozenset(SYSTEM.scalars)


@dataclass(slots=True)
class _Plan:
    """What to poll on one target, decided on its first poll and kept until it reboots or changes."""

    kind: str
    profiles: tuple[str, ...]
    override: str | None
    sys_object_id: Value
    uptime: int | None
    scalars: dict[str, str] = field(default_factory=dict)  # field -> OID
    columns: dict[str, str] = field(default_factory=dict)  # field -> column OID
    binary: frozenset[str] = frozenset()  # column OIDs rendered as hex
    tuned: bool = False  # columns trimmed after the first full walk
    static: frozenset[str] = frozenset()  # rarely changing column fields, served from the cache
    rows: list[tuple[str, str]] = field(default_factory=list)
    refresh_on: frozenset[str] = frozenset()
    static_cache: dict[str, dict[str, Value]] | None = None
    static_at: float = 0.0
    markers: dict[str, dict[str, Value]] = field(default_factory=dict)
    expected_rows: int = 0  # rows seen last time, so the last GETBULK asks for just one row more
    family: Family | None = None
    hardware: dict[str, str] = field(default_factory=dict)  # model, serial, firmware: read once per detection
    unread: dict[str, str] = field(default_factory=dict)  # scalars silent even asked alone: left out until retry_at
    split_walk: bool = False  # the agent stays silent on multi-column GETBULKs: walk each column alone until retry_at
    retry_at: float = 0.0  # when to try the unread scalars and multi-column walks again (a lost packet is no quirk)


def _plan_for(
    kind: str, profiles: tuple[str, ...], override: str | None, system: dict[str, Value], family: Family | None = None
) -> _Plan:
    plan = _Plan(kind, profiles, override, system.get("sys_object_id"), _as_int(system.get("sys_uptime")), family=family)
    extra = family.profile() if family is not None else None
    for name in profiles:
        prof = extra if extra is not None and name == extra.name else PROFILES[name]
        plan.scalars.update(prof.scalars)
        plan.columns.update(prof.columns)
        plan.binary |= {prof.columns[f] for f in prof.binary}
        plan.static |= prof.static
        plan.refresh_on |= prof.refresh_on
        if prof.rows:
            plan.rows.append(prof.rows)
    return plan


SHARED_ROWS_MAX = 20_000
_shared_rows: dict[tuple[tuple[str, Value], ...], dict[str, Value]] = {}


def shared_rows(rows: dict[str, Value]) -> dict[str, Value]:
    """One object for equal cached columns: devices of one model have the same ifDescr, ifType, ifMtu ...

    Cached columns are only read, never changed, so thousands of devices can hold the same dict.
    """
    try:
        key = tuple(rows.items())
        found = _shared_rows.get(key)
    except TypeError:  # an unhashable value: keep this device's own copy
        return rows
    if found is None:
        if len(_shared_rows) >= SHARED_ROWS_MAX:
            _shared_rows.clear()
        found = _shared_rows[key] = rows
    return found


def _as_int(value: Value) -> int | None:
    return value if isinstance(value, int) else None


class SnmpCollector:
    """Collector for check kind "snmp" (v1/v2c/v3) with per-target profile detection."""

    kind = "snmp"

    def __init__(
        self,
        client: SnmpClient | None = None,
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
        static_max_age: float = STATIC_MAX_AGE,
        families: tuple[Family, ...] | None = None,
    ) -> None:
        self.client = client or SnmpClient()
        self.families = load_families_cached() if families is None else families  # a bad family file fails here, at start
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.static_max_age = static_max_age
        self._plans: dict[tuple[str, int, SnmpCredentials | None], _Plan] = {}

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        """Poll one target; `profile` (a kind like "linux" or a list like "if,host") skips detection."""
        started, ts = time.monotonic(), time.time()
        profile = profile or None
        try:
            forced = resolve_override(profile) if profile else None
        except ValueError as exc:
            raise CollectError(str(exc)) from None
        key = (target.address, target.port, target.snmp)  # snmpsim serves many devices per port
        plan = self._plans.get(key)
        fresh = plan is None or plan.override != profile
        if plan is not None and (plan.unread or plan.split_walk) and started >= plan.retry_at:
            plan.scalars.update(plan.unread)
            plan.unread, plan.split_walk = {}, False
        oids = dict(SYSTEM.scalars) if fresh or plan is None else dict(plan.scalars)
        if fresh:
            oids.update(self._detect_oids(forced))
        silent: list[str] = []
        scalars = await self._get(target, oids, silent)
        if plan is not None and not fresh and self._changed(plan, scalars):
            fresh = True
            more = {n: o for n, o in self._detect_oids(forced).items() if n not in scalars}
            scalars.update(await self._get(target, more, silent))
        if fresh or plan is None:
            plan = await self._detect(target, profile, forced, scalars)
            self._plans[key] = plan
            missing = {n: o for n, o in plan.scalars.items() if n not in scalars}
            if missing:
                scalars.update(await self._get(target, missing, silent))
        if silent:  # not asked with the others until retry_at: one silent OID would silence the whole GET
            plan.unread.update({n: plan.scalars.pop(n) for n in silent if n in plan.scalars})
            plan.retry_at = time.monotonic() + self.static_max_age
        plan.uptime = _as_int(scalars.get("sys_uptime"))
        unread_columns: list[str] = []
        columns, truncated = await self._walk(target, plan, unread_columns)
        if not plan.tuned and not truncated:
            self._tune(plan, columns)
        reading = build_reading(plan.kind, plan.profiles, scalars, columns, ts, plan.family)
        if plan.hardware:
            reading.facts.update(plan.hardware)
        if truncated:
            reading.facts["truncated"] = truncated
        if plan.unread or unread_columns:
            names = ", ".join(sorted({*plan.unread, *unread_columns}))
            reading.facts["warnings"] = [f"no answer for {names}, even asked alone; the rest was read"]
        reading.duration = time.monotonic() - started
        return reading

    async def _walk_fields(self, target: Target, plan: _Plan, fields: dict[str, str], unread: list[str]) -> WalkResult:
        if not fields:
            return WalkResult()
        oids = list(fields.values())
        walked: WalkResult | None = None
        if not plan.split_walk:
            try:
                walked = await self.client.walk_columns(
                    target, oids, self.max_rows, self.max_bytes, binary=plan.binary, expected_rows=plan.expected_rows
                )
            except Unreachable:  # the GETs of this poll answered: silence here is about this request
                walked = None
        if walked is None or walked.truncated == "timeout":
            if not plan.split_walk:
                plan.split_walk, plan.retry_at = True, time.monotonic() + self.static_max_age
            walked, silent = await walk_split(self.client, target, oids, self.max_rows, self.max_bytes, plan.binary)
            unread.extend(name for name, oid in fields.items() if oid in silent)
        result = WalkResult({name: walked.get(oid, {}) for name, oid in fields.items()})
        result.truncated = walked.truncated
        return result

    async def _walk(self, target: Target, plan: _Plan, unread: list[str]) -> tuple[dict[str, dict[str, Value]], str | None]:
        """Walk the dynamic columns; static ones come from the cache unless stale or the rows changed."""
        static = {f: oid for f, oid in plan.columns.items() if f in plan.static}
        stale = plan.static_cache is None or time.monotonic() - plan.static_at > self.static_max_age
        wanted = plan.columns if stale else {f: oid for f, oid in plan.columns.items() if f not in static}
        walked = await self._walk_fields(target, plan, wanted, unread)
        columns: dict[str, dict[str, Value]] = dict(walked)
        truncated = walked.truncated
        if not stale and self._rows_changed(plan, columns):
            extra = await self._walk_fields(target, plan, static, unread)
            columns.update(extra)
            truncated = truncated or extra.truncated
            stale = True
        if not stale and plan.static_cache is not None:
            columns.update(plan.static_cache)
        elif not truncated:
            plan.static_cache = {f: shared_rows(columns.get(f, {})) for f in static}
            plan.static_at = time.monotonic()
        plan.markers = {f: columns.get(f, {}) for f in plan.refresh_on}
        plan.expected_rows = max((len(rows) for rows in columns.values()), default=0)
        return columns, truncated

    @staticmethod
    def _rows_changed(plan: _Plan, columns: dict[str, dict[str, Value]]) -> bool:
        """New or vanished rows, or a changed marker (ifLastChange), make the static cache stale."""
        cache = plan.static_cache or {}
        if any(set(columns.get(dyn, {})) != set(cache.get(st, {})) for dyn, st in plan.rows):
            return True
        return any(columns.get(f, {}) != plan.markers.get(f, {}) for f in plan.refresh_on)

    async def _get(self, target: Target, oids: dict[str, str], silent: list[str]) -> dict[str, Value]:
        """GET by name; after silence, the system group alone decides reachability and the rest is asked alone."""
        try:
            got = await self.client.get(target, list(oids.values()))
        except Unreachable:
            if len(oids) <= 1:
                raise
            values, quiet = await get_split(self.client, target, oids, VITAL)
            silent.extend(quiet)
            return values
        return {name: got.get(oid) for name, oid in oids.items()}

    @staticmethod
    def _detect_oids(forced: tuple[str | None, tuple[str, ...]] | None) -> dict[str, str]:
        """Detection scalars plus every candidate profile's scalars: one GET, absent ones are free in v2c."""
        oids = dict(DETECT_SCALARS)
        for name in forced[1] if forced else OPTIONAL_PROFILES:
            oids.update(PROFILES[name].scalars)
        return oids

    @staticmethod
    def _changed(plan: _Plan, scalars: dict[str, Value]) -> bool:
        """A reboot (uptime went back) or a new sysObjectID may mean new firmware: detect again."""
        uptime = _as_int(scalars.get("sys_uptime"))
        rebooted = plan.uptime is not None and uptime is not None and uptime < plan.uptime
        return rebooted or scalars.get("sys_object_id") != plan.sys_object_id

    async def _detect(
        self,
        target: Target,
        profile: str | None,
        forced: tuple[str | None, tuple[str, ...]] | None,
        scalars: dict[str, Value],
    ) -> _Plan:
        answered: frozenset[str] = frozenset()
        if forced is None:
            probes = detection_probes(self.families)
            try:
                found = await self.client.get_next(target, list(probes))
            except Unreachable:  # one probe the agent chokes on must not hide the others
                found = await next_split(self.client, target, list(probes))
            answered = frozenset(probes[oid] for oid, hit in found.items() if hit is not None)
        facts = facts_of(scalars, answered)
        if forced is not None:
            kind = forced[0] or detect_kind(facts)
            return _plan_for(kind, forced[1], profile, scalars)
        family = family_of(self.families, facts)
        profiles = choose_profiles(answered)
        extra = family.profile() if family is not None else None
        if extra is not None:
            profiles = (*profiles, extra.name)
        plan = _plan_for(family_kind(family, facts), profiles, None, scalars, family)
        plan.hardware = await read_hardware(self.client, target, family)
        return plan

    @staticmethod
    def _tune(plan: _Plan, columns: dict[str, dict[str, Value]]) -> None:
        """After one full walk, stop asking for columns the device showed it does not need."""
        plan.tuned = True
        if "if" not in plan.profiles:
            return
        drop: set[str] = set()
        if columns.get("hc_in_octets") and columns.get("hc_out_octets"):
            drop |= OCTETS32_FIELDS
        else:
            drop |= HC_FIELDS
        if not any(columns.get(f) for f in IFX_FIELDS):
            drop |= IFX_FIELDS
        for name in drop:
            plan.columns.pop(name, None)

    async def set(self, target: Target, varbinds: Sequence[tuple[str, object]]) -> dict[str, Value]:
        """SET values on a target (remediation, e.g. ifAdminStatus); raises CollectError when refused."""
        return await self.client.set(target, varbinds)

    async def close(self) -> None:
        """Close the shared sockets."""
        await self.client.close()


async def snmp_set(target: Target, varbinds: Sequence[tuple[str, object]]) -> dict[str, Value]:
    """One-off SET with a short-lived client (for actions outside a running collector)."""
    client = SnmpClient()
    try:
        return await client.set(target, varbinds)
    finally:
        await client.close()


register("snmp", SnmpCollector)
