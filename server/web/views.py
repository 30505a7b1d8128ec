"""View models: the same dicts feed the JSON API and the HTML pages."""

from __future__ import annotations

import time
from typing import TypedDict

from server.runtime import Services
from server.store import device_views
from server.store.db import Connection
from server.store.dependents import OUTAGE, behind_outages
from server.store.device_state import SEVERITY_ORDER
from server.store.device_views import DeviceStatusRow
from server.store.devices import public_spec
from server.store.jsontypes import JsonObject, JsonValue
from server.store.metrics import clean_record, labels_of
from server.store.overview import DeviceListRow, DeviceSummary, summary
from server.store.space import FULL_MESSAGE, human

RESOURCE_METRICS = (
    "cpu_load_pct",
    "cpu_pct",
    "cpu_iowait_pct",
    "mem_total_bytes",
    "mem_used_bytes",
    "mem_used_pct",
    "swap_used_pct",
    "swap_total_bytes",
    "load1",
    "load5",
    "load15",
    "uptime_seconds",
    "systemd_failed_units",
    "ups_battery_status",
    "ups_on_battery",
    "ups_charge_pct",
    "ups_runtime_minutes",
    "ups_load_pct",
)
UPS_BATTERY = {1: "unknown", 2: "normal", 3: "low", 4: "depleted"}


class DeviceList(TypedDict):
    """A page of the device list, the number that matched, the count per state and every tag."""

    items: list[DeviceListRow]
    total: int
    limit: int
    offset: int
    counts: dict[str, int]
    tags: list[str]


class LatestMetric(TypedDict):
    """A device's latest value of one metric series, by the check that measured it."""

    check: str
    metric: str
    labels: dict[str, str]
    value: float | None


class DeviceRef(TypedDict):
    """A device named by id and name."""

    id: int
    name: str


class StateEvent(TypedDict):
    """One state change as a device's page lists it."""

    ts: float
    old: str
    new: str
    reason: str | None


class DeviceDetail(DeviceListRow):
    """Everything about one device (the JSON API and its pages): facts, interfaces, resources, metrics, checks ..."""

    interval: int
    facts: JsonObject
    interfaces: list[JsonObject]
    resources: JsonObject
    metrics: list[LatestMetric]
    checks: list[JsonObject]
    spec: JsonObject
    children: list[DeviceRef]
    events: list[StateEvent]


class StorageState(TypedDict):
    """Free space on the data directory and whether writes stopped for lack of it."""

    state: str
    message: str | None
    free_bytes: int | None
    free: str | None
    reserve_bytes: int | None
    since: float | None
    errors: int
    last_error: str | None


class WriterState(TypedDict):
    """The sample writer: what waits, what failed, what is held in memory while the disk is full."""

    backlog: int | None
    errors: int
    last_error: str | None
    held_samples: int
    dropped_samples: int


class StorageHealth(TypedDict):
    """Storage and writer figures (/healthz, the overview banner)."""

    storage: StorageState
    writer: WriterState


def _text(value: JsonValue) -> str | None:
    return value if isinstance(value, str) else None


def rows_of(value: JsonValue) -> list[JsonObject]:
    """The rows of a table value (a list of objects; anything else in it is skipped)."""
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def _summary(r: DeviceStatusRow, parents: dict[int, str]) -> DeviceSummary:
    facts = r.facts or {}
    parent = parents.get(r.parent_id) if r.parent_id else None
    return summary(r, r.kind or _text(facts.get("kind")), list(r.tags or []), parent,
                   _text(facts.get("sys_name") or facts.get("hostname")))  # fmt: skip


def device_list(
    conn: Connection, q: str = "", tag: str = "", state: str = "", limit: int = 500, offset: int = 0
) -> DeviceList:
    """Devices, problems first, filtered by free text, tag and state."""
    rows = device_views.summaries(conn)
    parents = {r.id: r.name for r in rows}
    behind = behind_outages(conn)
    items = [DeviceListRow(**_summary(r, parents), behind=behind.get(r.id)) for r in rows]
    needle = q.strip().lower()
    if needle:
        items = [
            d
            for d in items
            if needle in d["name"].lower()
            or needle in d["address"].lower()
            or needle in str(d["sys_name"] or "").lower()
            or any(needle in t.lower() for t in d["tags"])
        ]
    if tag:
        items = [d for d in items if tag in d["tags"]]
    if state:
        items = [d for d in items if d["state"] == state]
    order: dict[str, int] = {str(k): v for k, v in SEVERITY_ORDER.items()}
    items.sort(key=lambda d: (order.get(d["state"], 9), d["name"]))
    counts: dict[str, int] = {}
    for d in items:
        counts[d["state"]] = counts.get(d["state"], 0) + 1
    tags = sorted({t for r in rows for t in (r.tags or [])})
    # Stored device text may predate cleaning on write: never let it break a page or a JSON answer.
    return clean_record(
        DeviceList(items=items[offset : offset + limit], total=len(items), limit=limit, offset=offset, counts=counts, tags=tags)
    )


def _latest(metrics: dict[str, list[list[JsonValue]]]) -> list[LatestMetric]:
    out = []
    for check, rows in sorted(metrics.items()):
        for metric, labels, value in rows:
            number = value if isinstance(value, int | float) else None
            out.append(LatestMetric(check=check, metric=str(metric), labels=labels_of(str(labels)), value=number))
    return out


def _interfaces(tables: JsonObject, latest: list[LatestMetric]) -> list[JsonObject]:
    by_index: dict[str, dict[str, float | None]] = {}
    for m in latest:
        index = m["labels"].get("ifIndex")
        if index is not None and m["metric"].startswith("if_"):
            by_index.setdefault(str(index), {})[m["metric"]] = m["value"]
    out: list[JsonObject] = []
    for row in rows_of(tables.get("interfaces")):
        rates = by_index.get(str(row.get("index")), {})
        out.append(
            {
                **row,
                "in_bps": rates.get("if_in_bps"),
                "out_bps": rates.get("if_out_bps"),
                "in_errors_rate": rates.get("if_in_errors_rate"),
                "out_errors_rate": rates.get("if_out_errors_rate"),
                "in_discards_rate": rates.get("if_in_discards_rate"),
                "out_discards_rate": rates.get("if_out_discards_rate"),
            }
        )
    return out


def _resources(tables: JsonObject, latest: list[LatestMetric]) -> JsonObject:
    res: JsonObject = {}
    for m in latest:
        if m["metric"] in RESOURCE_METRICS and not m["labels"]:
            res[m["metric"]] = m["value"]
    if "ups_battery_status" in res:
        status = res["ups_battery_status"]
        res["ups_battery"] = UPS_BATTERY.get(int(status), "unknown") if isinstance(status, int | float) else "unknown"
    for name in ("storage", "filesystems", "supplies", "failed_units", "commands", "sensors"):
        res[name] = list(rows_of(tables.get(name)))
    return res


def device_detail(conn: Connection, device_id: int, secret_keys: set[str] | None = None) -> DeviceDetail | None:
    """Everything about one device: summary, facts, interfaces, resources, latest metrics, checks, events."""
    r = device_views.detail(conn, device_id)
    if r is None:
        return None
    parents = {}
    if r.parent_id:
        parents = {r.parent_id: str(device_views.name_of(conn, r.parent_id))}
    latest = _latest(r.metrics or {})
    tables = r.tables or {}
    detail = DeviceDetail(
        **_summary(r, parents),
        behind=behind_outages(conn).get(r.id) if r.state in OUTAGE else None,
        interval=r.interval,
        facts=r.facts or {},
        interfaces=_interfaces(tables, latest),
        resources=_resources(tables, latest),
        metrics=latest,
        checks=[{"name": k, **v} for k, v in sorted((r.checks or {}).items())],
        spec=public_spec(r.spec or {}, secret_keys or set()),
        children=[DeviceRef(id=i, name=n) for i, n in device_views.children(conn, device_id)],
        events=[
            StateEvent(ts=e.ts, old=e.old_state, new=e.new_state, reason=e.reason)
            for e in device_views.recent_changes(conn, device_id)
        ],
    )
    return clean_record(detail)


def age(ts: float | None, now: float | None = None) -> str:
    """'12s', '5m', '3h', '2d' ago — short enough for a phone row."""
    if not ts:
        return "never"
    seconds = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _scaled(value: float | None, units: tuple[tuple[str, float], ...], unit: str, base: str) -> str:
    if value is None:
        return "–"
    for prefix, size in units:
        if value >= size:
            return f"{value / size:.1f} {prefix}{unit}"
    return f"{value:.0f} {base}"


def human_bps(value: float | None) -> str:
    """Bits per second in k/M/G."""
    return _scaled(value, (("G", 1e9), ("M", 1e6), ("k", 1e3)), "b/s", "b/s")


def human_bytes(value: float | None) -> str:
    """Bytes in KiB/MiB/GiB/TiB."""
    return _scaled(value, (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)), "B", "B")


def human_duration(seconds: float | None) -> str:
    """Uptime like '12d 4h'."""
    if seconds is None:
        return "–"
    s = int(seconds)
    days, rem = divmod(s, 86400)
    hours, rem = divmod(rem, 3600)
    minutes = rem // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


GRAPHS = (
    ("cpu_load_pct", "CPU %"),
    ("cpu_pct", "CPU %"),
    ("mem_used_pct", "Memory %"),
    ("swap_used_pct", "Swap %"),
    ("load1", "Load (1 min)"),
    ("ups_charge_pct", "UPS charge %"),
    ("ups_runtime_minutes", "UPS runtime (min)"),
    ("ping_rtt_ms", "Round trip (ms)"),
    ("ping_loss_pct", "Ping loss %"),
    ("tcp_connect_ms", "TCP connect (ms)"),
    ("http_latency_ms", "HTTP latency (ms)"),
    ("tls_cert_days_left", "TLS days left"),
    ("plugin_pct", "Plug-in %"),
    ("plugin_ms", "Plug-in time (ms)"),
    ("plugin_bytes", "Plug-in size"),
    ("plugin_count_rate", "Plug-in rate"),
    ("plugin_value", "Plug-in value"),
)
RANGE_SECONDS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


def storage_health(svc: Services) -> StorageHealth:
    """Storage and writer figures for /healthz and the overview banner (free space, full or not, what waits in memory)."""
    status = svc.storage.status() if svc.storage is not None else None
    writer = svc.writer
    storage: StorageState = {"state": "full" if status and status.full else "ok", "message": None, "free_bytes": None,
                               "free": None, "reserve_bytes": None, "since": None, "errors": 0, "last_error": None}
    if status is not None:
        storage.update({"free_bytes": status.free_bytes, "free": human(status.free_bytes), "reserve_bytes": status.reserve_bytes,
                        "since": status.since, "errors": status.errors, "last_error": status.last_error})
        if status.full:
            storage["message"] = f"{FULL_MESSAGE} ({human(status.free_bytes)} free)"
    return {
        "storage": storage,
        "writer": {
            "backlog": writer.backlog if writer else None,
            "errors": writer.errors if writer else 0,
            "last_error": writer.last_error if writer else None,
            "held_samples": len(writer.held) if writer else 0,
            "dropped_samples": writer.held_dropped if writer else 0,
        },
    }
