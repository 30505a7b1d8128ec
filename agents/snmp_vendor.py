"""Turn a device family's vendor MIB values (CPU, memory, flash/storage, UPS battery) into samples and rows.

Standard MIBs (HOST-RESOURCES, UCD, UPS-MIB) come first: a family value only fills what they left empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents.base import Reading, Sample
from agents.snmp_families import Family, Metric, field_name
from agents.snmp_values import Value

Columns = Mapping[str, Mapping[str, Value]]


def _number(value: Value, metric: Metric) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = float(value)
    elif isinstance(value, str) and len(value) < 256:
        found = metric.pattern.search(value) if metric.pattern else None
        try:
            number = float(found.group(1) if found else value.strip())
        except ValueError:
            return None
    else:
        return None
    return number * metric.scale


def _values(family: Family, key: str, scalars: Mapping[str, Value], columns: Columns) -> list[float]:
    metric = family.metrics.get(key)
    if metric is None:
        return []
    name = field_name(key)
    raw = list((columns.get(name) or {}).values()) if metric.column else [scalars.get(name)]
    return [n for n in (_number(v, metric) for v in raw) if n is not None]


def _one(family: Family, key: str, scalars: Mapping[str, Value], columns: Columns) -> float | None:
    values = _values(family, key, scalars, columns)
    if not values:
        return None
    how = family.metrics[key].aggregate
    if how == "max":
        return max(values)
    if how == "sum":
        return sum(values)
    return sum(values) / len(values)


def add_family_values(reading: Reading, family: Family, scalars: Mapping[str, Value], columns: Columns) -> None:
    """Add cpu_load_pct, mem_*, storage rows and ups_* from the family's MIBs where standard MIBs gave none."""
    have = {s.metric for s in reading.samples}

    def add(metric: str, value: float | None, labels: dict[str, str] | None = None) -> None:
        if value is not None and (labels is not None or metric not in have):
            reading.samples.append(Sample(metric, round(float(value), 2), labels or {}, "gauge", reading.ts))

    add("cpu_load_pct", _one(family, "cpu.load", scalars, columns))
    _memory(family, scalars, columns, add)
    _storage(reading, family, columns, add)
    add("ups_charge_pct", _one(family, "battery.charge_pct", scalars, columns))
    runtime = _one(family, "battery.runtime", scalars, columns)
    if runtime is not None:
        unit = family.metrics["battery.runtime"].unit
        add("ups_runtime_minutes", runtime / {"ticks": 6000.0, "seconds": 60.0}.get(unit, 1.0))
    add("ups_load_pct", _one(family, "battery.load_pct", scalars, columns))


def _memory(family: Family, scalars: Mapping[str, Value], columns: Columns, add: Any) -> None:
    pct = _one(family, "memory.used_pct", scalars, columns)
    units = family.units.get("memory", 1)
    used = _values(family, "memory.used", scalars, columns)
    free = _values(family, "memory.free", scalars, columns)
    total = _values(family, "memory.total", scalars, columns)
    used_sum = sum(used) if used else (sum(total) - sum(free) if total and free else None)
    total_sum = sum(total) if total else (sum(used) + sum(free) if used and free else None)
    if used_sum is not None and total_sum:
        add("mem_total_bytes", total_sum * units)
        add("mem_used_bytes", used_sum * units)
        pct = pct if pct is not None else used_sum / total_sum * 100
    add("mem_used_pct", min(max(pct, 0.0), 100.0) if pct is not None else None)


def _storage(reading: Reading, family: Family, columns: Columns, add: Any) -> None:
    descr = columns.get(field_name("storage.descr")) or {}
    size = columns.get(field_name("storage.size")) or {}
    if not size:
        return
    units = family.units.get("storage", 1)
    used_col = columns.get(field_name("storage.used")) or {}
    free_col = columns.get(field_name("storage.free")) or {}
    rows: list[dict[str, Any]] = reading.tables.setdefault("storage", [])
    for idx, raw_size in size.items():
        if not isinstance(raw_size, int) or raw_size <= 0:
            continue
        used = used_col.get(idx)
        free = free_col.get(idx)
        used_units = used if isinstance(used, int) else (raw_size - free if isinstance(free, int) else None)
        size_bytes = raw_size * units
        used_bytes = used_units * units if used_units is not None else None
        pct = round(min(max(used_bytes / size_bytes * 100, 0.0), 100.0), 1) if used_bytes is not None else None
        name = str(descr.get(idx) or idx)
        rows.append(
            {"index": idx, "descr": name, "type": "flash", "size_bytes": size_bytes, "used_bytes": used_bytes, "used_pct": pct}
        )
        labels = {"storage": name}
        add("storage_used_pct", pct, labels)
        add("storage_used_bytes", used_bytes, labels)
        add("storage_size_bytes", size_bytes, labels)
