"""ENTITY-SENSOR-MIB and CISCO-ENTITY-SENSOR-MIB rows as samples: temperatures, fans, voltages, with the device's thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from agents.base import Reading, Sample
from agents.snmp_values import Value

Columns = Mapping[str, Mapping[str, Value]]

# EntitySensorDataType -> (metric, unit); Cisco's SensorDataType adds dBm (14).
SENSOR_TYPES: Final[dict[int, tuple[str, str]]] = {
    3: ("sensor_volts", "V AC"),
    4: ("sensor_volts", "V DC"),
    5: ("sensor_amperes", "A"),
    6: ("sensor_watts", "W"),
    7: ("sensor_hertz", "Hz"),
    8: ("sensor_celsius", "°C"),
    9: ("sensor_humidity_pct", "%RH"),
    10: ("sensor_fan_rpm", "rpm"),
    14: ("sensor_dbm", "dBm"),
}
UNITS_SCALE: Final = 9  # EntitySensorDataScale units(9); each step is a factor of 1000
RELATIONS: Final = {1: "<", 2: "<=", 3: ">", 4: ">=", 5: "==", 6: "!="}
SEVERITIES: Final = {1: "other", 10: "minor", 20: "major", 30: "critical"}
MAX_SENSORS: Final = 500


def _int(value: Value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _convert(raw: int, scale: int | None, precision: int | None) -> float:
    exponent = ((scale or UNITS_SCALE) - UNITS_SCALE) * 3 - (precision or 0)
    return round(raw * 10.0**exponent, 3)


def add_sensors(reading: Reading, columns: Columns, prefix: str) -> None:
    """Add one sample per readable sensor (labels: sensor) and, with thresholds, sensor_alarm 0/1 from the device's verdict."""
    values = columns.get(f"{prefix}_value") or {}
    names = columns.get(f"{prefix}_entity_name") or {}
    rows: list[dict[str, Any]] = reading.tables.setdefault("sensors", [])
    thresholds = _thresholds(columns, prefix)
    for idx, raw in list(values.items())[:MAX_SENSORS]:
        kind = SENSOR_TYPES.get(_int((columns.get(f"{prefix}_type") or {}).get(idx)) or 0)
        status = _int((columns.get(f"{prefix}_status") or {}).get(idx))
        number = _int(raw)
        if kind is None or number is None or status not in (None, 1):  # 2 unavailable, 3 nonoperational
            continue
        scale = _int((columns.get(f"{prefix}_scale") or {}).get(idx))
        precision = _int((columns.get(f"{prefix}_precision") or {}).get(idx))
        value = _convert(number, scale, precision)
        name = str(names.get(idx) or f"sensor {idx}")
        labels = {"sensor": name}
        reading.samples.append(Sample(kind[0], value, labels, "gauge", reading.ts))
        limits = [{**t, "value": _convert(t["raw"], scale, precision)} for t in thresholds.get(idx, [])]
        row: dict[str, Any] = {"index": idx, "name": name, "metric": kind[0], "unit": kind[1], "value": value}
        if limits:
            row["thresholds"] = [{k: v for k, v in t.items() if k not in ("raw", "crossed")} for t in limits]
            alarm = any(t["crossed"] for t in limits)
            reading.samples.append(Sample("sensor_alarm", 1.0 if alarm else 0.0, labels, "gauge", reading.ts))
        rows.append(row)


def _thresholds(columns: Columns, prefix: str) -> dict[str, list[dict[str, Any]]]:
    """Thresholds by sensor index (rows are "sensor.threshold"); crossed is the agent's own evaluation."""
    found: dict[str, list[dict[str, Any]]] = {}
    values = columns.get(f"{prefix}_threshold_value") or {}
    for key, raw in values.items():
        sensor, _, _ = key.partition(".")
        number = _int(raw)
        if number is None:
            continue
        relation = _int((columns.get(f"{prefix}_threshold_relation") or {}).get(key))
        severity = _int((columns.get(f"{prefix}_threshold_severity") or {}).get(key))
        crossed = _int((columns.get(f"{prefix}_threshold_crossed") or {}).get(key)) == 1  # TruthValue true(1)
        found.setdefault(sensor, []).append(
            {
                "relation": RELATIONS.get(relation or 0, "?"),
                "severity": SEVERITIES.get(severity or 0, "other"),
                "raw": number,
                "crossed": crossed,
            }
        )
    return found
