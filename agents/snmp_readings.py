"""Turn decoded SNMP scalars and columns into the Reading contract: facts, tables and samples."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agents.base import Reading, Sample, SampleKind
from agents.snmp_families import Family
from agents.snmp_sensors import add_sensors
from agents.snmp_values import Value
from agents.snmp_vendor import add_family_values

Columns = Mapping[str, Mapping[str, Value]]

ADMIN_STATUS: Final = {1: "up", 2: "down", 3: "testing"}
OPER_STATUS: Final = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "notPresent",
    7: "lowerLayerDown",
}
HR_STORAGE_TYPES: Final = "1.3.6.1.2.1.25.2.1."
STORAGE_TYPES: Final = {2: "ram", 3: "virtual", 4: "fixed", 5: "removable", 6: "removable", 7: "removable"}
UPS_OUTPUT_SOURCE: Final = {
    1: "other",
    2: "none",
    3: "normal",
    4: "bypass",
    5: "battery",
    6: "booster",
    7: "reducer",
}
PRINTER_STATUS: Final = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}
SUPPLY_TYPES: Final = dict(
    enumerate(
        (
            "other",
            "unknown",
            "toner",
            "wasteToner",
            "ink",
            "inkCartridge",
            "inkRibbon",
            "wasteInk",
            "opc",
            "developer",
            "fuserOil",
            "solidWax",
            "ribbonWax",
            "wasteWax",
            "fuser",
            "coronaWire",
            "fuserOilWick",
            "cleanerUnit",
            "fuserCleaningPad",
            "transferUnit",
            "tonerCartridge",
            "fuserOiler",
            "water",
            "wasteWater",
            "glueWaterAdditive",
            "wastePaper",
            "bindingSupply",
            "bandingSupply",
            "stitchingWire",
            "shrinkWrap",
            "paperWrap",
            "staples",
            "inserts",
            "covers",
        ),
        start=1,
    )
)
SPEED_MAX32: Final = 4_294_967_295


def _int(value: Value) -> int | None:
    return value if isinstance(value, int) else None


def _unsigned(value: Value) -> int | None:
    """hrStorage sizes are Integer32 and wrap negative on large disks."""
    return value + 2**32 if isinstance(value, int) and value < 0 else _int(value)


def _pct(part: float, whole: float) -> float | None:
    return round(min(max(part / whole * 100.0, 0.0), 100.0), 1) if whole > 0 else None


def _index(suffix: str) -> int | str:
    return int(suffix) if suffix.isdigit() else suffix


def _col(columns: Columns, name: str) -> Mapping[str, Value]:
    return columns.get(name) or {}


class _Out:
    """Accumulates one Reading's samples with a shared timestamp."""

    def __init__(self, ts: float) -> None:
        self.reading = Reading(ts=ts)

    def add(
        self,
        metric: str,
        value: float | None,
        labels: dict[str, str] | None = None,
        kind: SampleKind = "gauge",
    ) -> None:
        if value is not None:
            self.reading.samples.append(Sample(metric, float(value), labels or {}, kind, self.reading.ts))


def build_reading(
    kind: str, profiles: tuple[str, ...], scalars: Mapping[str, Value], columns: Columns, ts: float, family: Family | None = None
) -> Reading:
    """Assemble facts, tables and samples for the profiles that were polled (and the device family's own MIBs)."""
    out = _Out(ts)
    _system(out, kind, profiles, scalars)
    if family is not None:
        out.reading.facts["family"] = family.name
    if "if" in profiles:
        _interfaces(out, columns)
    if "host" in profiles or "ucd" in profiles:
        _host_and_ucd(out, profiles, scalars, columns)
    if "ups" in profiles:
        _ups(out, scalars, columns)
    if "printer" in profiles:
        _printer(out, columns)
    if "sensors" in profiles:
        add_sensors(out.reading, columns, "sensor")
    if "cisco_sensors" in profiles:
        add_sensors(out.reading, columns, "csensor")
    if family is not None and family.name in profiles:
        add_family_values(out.reading, family, scalars, columns)
    return out.reading


def _system(out: _Out, kind: str, profiles: tuple[str, ...], scalars: Mapping[str, Value]) -> None:
    uptime = _int(scalars.get("sys_uptime"))
    facts: dict[str, Any] = out.reading.facts
    for name in ("sys_descr", "sys_object_id", "sys_name", "sys_location", "sys_contact"):
        value = scalars.get(name)
        facts[name] = value if isinstance(value, str) else None
    facts["uptime_seconds"] = uptime / 100 if uptime is not None else None
    facts["kind"] = kind
    facts["profiles"] = list(profiles)
    out.add("uptime_seconds", facts["uptime_seconds"])


def _interfaces(out: _Out, columns: Columns) -> None:
    descr, name, alias = _col(columns, "descr"), _col(columns, "name"), _col(columns, "alias")
    hc_in, hc_out = _col(columns, "hc_in_octets"), _col(columns, "hc_out_octets")
    if_fields = ("descr", "type", "oper_status", "admin_status", "mtu", "speed", "in_octets")
    indexes = sorted({i for f in if_fields for i in _col(columns, f) if i.isdigit()}, key=int)
    rows = []
    for idx in indexes:
        label_name = name.get(idx) or descr.get(idx) or idx
        labels = {"ifIndex": idx, "ifName": str(label_name)}
        speed, high = _int(_col(columns, "speed").get(idx)), _int(_col(columns, "high_speed").get(idx))
        if speed is not None and speed != SPEED_MAX32 and (speed or not high):
            speed_bps: int | None = speed
        else:
            speed_bps = high * 1_000_000 if high else speed
        oper = _int(_col(columns, "oper_status").get(idx))
        admin = _int(_col(columns, "admin_status").get(idx))
        last_change = _int(_col(columns, "last_change").get(idx))
        rows.append(
            {
                "index": int(idx),
                "name": name.get(idx) or descr.get(idx),
                "descr": descr.get(idx),
                "alias": alias.get(idx),
                "type": _int(_col(columns, "type").get(idx)),
                "mtu": _int(_col(columns, "mtu").get(idx)),
                "speed_bps": speed_bps,
                "mac": _col(columns, "phys_address").get(idx),
                "admin": ADMIN_STATUS.get(admin or 0, "unknown"),
                "oper": OPER_STATUS.get(oper or 0, "unknown"),
                "last_change_s": last_change / 100 if last_change is not None else None,
            }
        )
        for direction, hc in (("in", hc_in), ("out", hc_out)):
            if _int(hc.get(idx)) is not None:
                out.add(f"if_{direction}_octets", _int(hc.get(idx)), labels, "counter64")
            else:
                out.add(
                    f"if_{direction}_octets",
                    _int(_col(columns, f"{direction}_octets").get(idx)),
                    labels,
                    "counter32",
                )
        for metric in ("in_errors", "out_errors", "in_discards", "out_discards"):
            out.add(f"if_{metric}", _int(_col(columns, metric).get(idx)), labels, "counter32")
        if oper is not None:
            out.add("if_oper_up", 1 if oper == 1 else 0, labels)
        if admin is not None:
            out.add("if_admin_up", 1 if admin == 1 else 0, labels)
    out.reading.tables["interfaces"] = rows
    addresses = [{"address": addr, "if_index": _int(v)} for addr, v in _col(columns, "ip_if_index").items() if _int(v)]
    if addresses:
        out.reading.tables["ip_addresses"] = addresses[:256]


def _storage_rows(columns: Columns) -> list[dict[str, Any]]:
    descr, stype = _col(columns, "storage_descr"), _col(columns, "storage_type")
    rows = []
    for idx in sorted(set(descr) | set(stype), key=lambda i: (len(i), i)):
        type_oid = stype.get(idx)
        type_no = 0
        if isinstance(type_oid, str) and type_oid.startswith(HR_STORAGE_TYPES):
            tail = type_oid[len(HR_STORAGE_TYPES) :]
            type_no = int(tail) if tail.isdigit() else 0
        units = _int(_col(columns, "storage_units").get(idx)) or 1
        size = _unsigned(_col(columns, "storage_size").get(idx))
        used = _unsigned(_col(columns, "storage_used").get(idx))
        size_bytes: int | None = size * units if size is not None else None
        used_bytes: int | None = used * units if used is not None else None
        rows.append(
            {
                "index": _index(idx),
                "descr": descr.get(idx),
                "type": STORAGE_TYPES.get(type_no, "other"),
                "size_bytes": size_bytes,
                "used_bytes": used_bytes,
                "used_pct": _pct(used_bytes, size_bytes) if size_bytes and used_bytes is not None else None,
            }
        )
    return rows


def _host_and_ucd(out: _Out, profiles: tuple[str, ...], scalars: Mapping[str, Value], columns: Columns) -> None:
    storage = _storage_rows(columns) if "host" in profiles else []
    if "host" in profiles:
        out.reading.tables["storage"] = storage
        hr_uptime = _int(scalars.get("hr_system_uptime"))
        if hr_uptime is not None:
            out.reading.facts["host_uptime_seconds"] = hr_uptime / 100
    loads = [v for v in _col(columns, "processor_load").values() if isinstance(v, int)]
    idle = _int(scalars.get("ss_cpu_idle"))
    if loads:
        out.add("cpu_load_pct", round(sum(loads) / len(loads), 1))
    elif idle is not None:
        out.add("cpu_load_pct", 100 - idle)
    _memory(out, scalars, storage)
    for minutes in (1, 5, 15):
        out.add(f"load{minutes}", _float(scalars.get(f"la_load_{minutes}")))
    for row in storage:
        if row["type"] == "fixed" and row["size_bytes"]:
            labels = {"storage": str(row["descr"] or row["index"])}
            out.add("storage_used_pct", row["used_pct"], labels)
            out.add("storage_used_bytes", row["used_bytes"], labels)
            out.add("storage_size_bytes", row["size_bytes"], labels)


def _float(value: Value) -> float | None:
    if isinstance(value, int):
        return float(value)
    try:
        return float(value) if isinstance(value, str) and len(value) < 32 else None
    except ValueError:
        return None


def _memory(out: _Out, scalars: Mapping[str, Value], storage: list[dict[str, Any]]) -> None:
    total_kb = _int(scalars.get("mem_total_real"))
    avail_kb = _int(scalars.get("mem_avail_real"))
    ram = next((r for r in storage if r["type"] == "ram" and r["size_bytes"]), None)
    total: int | None
    used: int | None
    if total_kb and avail_kb is not None:
        # UCD on Linux: buffers and page cache are reclaimable, so they count as free.
        free_kb = avail_kb + (_int(scalars.get("mem_buffer")) or 0) + (_int(scalars.get("mem_cached")) or 0)
        total, used = total_kb * 1024, max(total_kb - free_kb, 0) * 1024
    elif ram is not None and ram["used_bytes"] is not None:
        total, used = ram["size_bytes"], ram["used_bytes"]
    else:
        total = used = None
    if total and used is not None:
        out.add("mem_total_bytes", total)
        out.add("mem_used_bytes", used)
        out.add("mem_used_pct", _pct(used, total))
    swap_total, swap_avail = _int(scalars.get("mem_total_swap")), _int(scalars.get("mem_avail_swap"))
    virtual = next((r for r in storage if r["type"] == "virtual" and r["size_bytes"]), None)
    if swap_total and swap_avail is not None:
        out.add("swap_used_pct", _pct(swap_total - swap_avail, swap_total))
    elif swap_total == 0:
        out.add("swap_used_pct", 0.0)
    elif virtual is not None:
        out.add("swap_used_pct", virtual["used_pct"])


def _ups(out: _Out, scalars: Mapping[str, Value], columns: Columns) -> None:
    status = _int(scalars.get("battery_status"))
    source = _int(scalars.get("output_source"))
    on_battery_s = _int(scalars.get("seconds_on_battery"))
    out.add("ups_battery_status", status)
    if source is not None or on_battery_s is not None:
        out.add("ups_on_battery", 1 if source == 5 or (on_battery_s or 0) > 0 else 0)
    out.add("ups_charge_pct", _int(scalars.get("charge_remaining")))
    out.add("ups_runtime_minutes", _int(scalars.get("minutes_remaining")))
    loads = [v for v in _col(columns, "output_load").values() if isinstance(v, int)]
    out.add("ups_load_pct", max(loads) if loads else None)
    if source is not None:
        out.reading.facts["ups_output_source"] = UPS_OUTPUT_SOURCE.get(source, "other")


def _printer(out: _Out, columns: Columns) -> None:
    descr, level, cap = (
        _col(columns, "supply_descr"),
        _col(columns, "supply_level"),
        _col(columns, "supply_max"),
    )
    rows = []
    for idx in sorted(set(descr) | set(level), key=lambda i: tuple(int(p) for p in i.split("."))):
        lvl, mx = _int(level.get(idx)), _int(cap.get(idx))
        # Printer-MIB: -1 other, -2 unknown, -3 "some remains"; none of them is a percentage.
        pct = _pct(lvl, mx) if lvl is not None and lvl >= 0 and mx is not None and mx > 0 else None
        supply_type = _int(_col(columns, "supply_type").get(idx))
        row = {
            "index": idx,
            "descr": descr.get(idx),
            "type": SUPPLY_TYPES.get(supply_type or 0, "other"),
            "level": lvl,
            "max": mx,
            "pct": pct,
        }
        rows.append(row)
        out.add("printer_supply_pct", pct, {"supply": str(row["descr"] or idx)})
    out.reading.tables["supplies"] = rows
    statuses = [v for v in _col(columns, "printer_status").values() if isinstance(v, int)]
    if statuses:
        out.reading.facts["printer_status"] = PRINTER_STATUS.get(statuses[0], "other")
