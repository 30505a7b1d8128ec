"""View models of the phone pages: the overview, a device's alerts and graphs, the graph of any metric."""

from __future__ import annotations

import time
from typing import TypedDict

from server.alerts.rules import Rule
from server.store import alerts as alert_store
from server.store import overview as overview_store
from server.store.alert_records import AlertView
from server.store.db import Connection
from server.store.metrics import clean_record, labels_key
from server.store.overview import DeviceListRow
from server.web import views
from server.web.charts import sparkline
from server.web.views import DeviceDetail, LatestMetric

PAGE_SIZE = 30  # a phone screenful or three; search and the pager reach the rest
OVERVIEW_ALERTS = 10
MAX_SERIES = 24
GRAPH_POINTS = 160  # about one point per 2 px of a phone-wide graph: smooth, and few bytes
PROBLEM_STATES = ("down", "unreachable", "degraded")
DEVICE_STATES = ("down", "unreachable", "degraded", "unknown", "up")
SEVERITIES = ("critical", "warning", "info")
TITLES = dict(views.GRAPHS) | {
    "if_in_bps": "Traffic in",
    "if_out_bps": "Traffic out",
    "if_in_errors_rate": "Errors in",
    "if_out_errors_rate": "Errors out",
    "if_in_discards_rate": "Discards in",
    "if_out_discards_rate": "Discards out",
    "storage_used_pct": "Storage used %",
}
UNITS = (
    ("_pct", "%"), ("_bps", "b/s"), ("_bytes", "B"), ("_ms", "ms"), ("_rate", "/s"), ("_minutes", "min"), ("_days_left", "d"),
)  # fmt: skip


def unit_of(metric: str) -> str:
    """The unit a metric's name promises (cpu_pct: %, if_in_bps: b/s ...)."""
    if metric.endswith("_seconds"):
        return "s"
    for suffix, unit in UNITS:
        if metric.endswith(suffix):
            return unit
    return ""


def fmt_value(value: float | None, unit: str = "") -> str:
    """A value for a small screen: 3 significant digits, k/M/G for rates and bytes."""
    if value is None:
        return "–"
    if unit == "b/s":
        return views.human_bps(value)
    if unit == "B":
        return views.human_bytes(value)
    if unit == "s":
        return views.human_duration(value)
    text = f"{value:.3g}" if abs(value) < 1e6 else f"{value:.3e}"
    return f"{text}{unit}" if unit.startswith("/") else f"{text} {unit}".strip()


THRESHOLD_OPS = {">": "above", ">=": "at or above", "<": "below", "<=": "at or below"}


class Overview(TypedDict):
    """The phone overview: one page of devices, counts by state and severity, the first open alerts."""

    devices: list[DeviceListRow]
    matched: int
    total: int
    page: int
    pages: int
    first: int
    last: int
    totals: dict[str, int]
    problems: int
    tags: list[str]
    alerts: list[AlertView]
    alerts_open: int
    alert_states: dict[str, int]
    severity: dict[str, int]


class Graph(TypedDict):
    """One metric series drawn over a range: SVG sparkline, latest value, min and max (as text), where it starts."""

    title: str
    metric: str
    labels: dict[str, str]
    unit: str
    now: str
    min: str | None
    max: str | None
    points: int
    started: float | None
    svg: str


class MetricEntry(TypedDict):
    """A metric a device reports: its title and unit, how many series, the latest value of the first (as text)."""

    metric: str
    title: str
    series: int
    unit: str
    now: str


def alert_value(rule: Rule | None, value: float | None) -> dict[str, str] | None:
    """An alert's last value where it means something: the metric of a threshold rule, in its unit, with the threshold.

    Conditions like `on_battery == 1` or `if_oper_up == 0` are yes/no: their value says nothing the title does not."""
    if rule is None or value is None or not rule.clauses:
        return None
    first = rule.clauses[0]  # the engine keeps the value of the first clause
    if first.op not in THRESHOLD_OPS or not isinstance(first.value, float):
        return None
    unit = unit_of(first.name)
    return {
        "metric": TITLES.get(first.name, first.name),
        "now": fmt_value(value, unit),
        "limit": f"{THRESHOLD_OPS[first.op]} {fmt_value(first.value, unit)}",
    }


def _matches(d: DeviceListRow, needle: str) -> bool:
    return (
        needle in d["name"].lower()
        or needle in d["address"].lower()
        or needle in str(d["sys_name"] or "").lower()
        or any(needle in t.lower() for t in d["tags"])
    )


def overview(conn: Connection, q: str = "", tag: str = "", state: str = "", page: int = 1) -> Overview:
    """What the overview shows: counts by state and severity, open alerts, one page of devices (problems first)."""
    counts = overview_store.state_counts(conn)
    totals = {s: counts.get(s, 0) for s in DEVICE_STATES} | counts
    needle = q.strip().lower()
    if needle or tag:  # searching reads every row's few columns; the plain view asks the database for one page
        items = overview_store.device_rows(conn, state)
        if needle:
            items = [d for d in items if _matches(d, needle)]
        if tag:
            items = [d for d in items if tag in d["tags"]]
        matched = len(items)
    else:
        matched = totals.get(state, 0) if state else sum(counts.values())
    pages = max(1, -(-matched // PAGE_SIZE))
    page = min(max(page, 1), pages)
    start = (page - 1) * PAGE_SIZE
    shown = items[start : start + PAGE_SIZE] if needle or tag else overview_store.device_rows(conn, state, PAGE_SIZE, start)
    open_alerts = alert_store.list_alerts(conn, "open", limit=500)
    visible = [a for a in open_alerts["items"] if a["state"] != "suppressed"]
    severity = {s: 0 for s in SEVERITIES}
    for a in visible:
        severity[a["severity"]] = severity.get(a["severity"], 0) + 1
    return clean_record(
        Overview(
            devices=shown,
            matched=matched,
            total=sum(counts.values()),
            page=page,
            pages=pages,
            first=start + 1 if shown else 0,
            last=start + len(shown),
            totals=totals,
            problems=sum(totals.get(s, 0) for s in PROBLEM_STATES),
            tags=overview_store.all_tags(conn),
            alerts=visible[:OVERVIEW_ALERTS],
            alerts_open=len(visible),
            alert_states=open_alerts["counts"],
            severity=severity,
        )
    )


def device_alerts(conn: Connection, device_id: int) -> list[AlertView]:
    """Open alerts of one device, firing first (suppressed ones too: the page says what hides them)."""
    return list(alert_store.list_alerts(conn, "open", device_id=device_id, limit=100)["items"])


def _series_title(metric: str, labels: dict[str, str]) -> str:
    base = TITLES.get(metric, metric.replace("_", " "))
    parts = [labels["ifName"]] if labels.get("ifName") else [v for _, v in sorted(labels.items())]
    return base + (" · " + " · ".join(parts) if parts else "")


def _graphs(
    conn: Connection, device_id: int, chosen: list[LatestMetric], since: float, until: float, raw_hours: int
) -> list[Graph]:
    """A graph (SVG sparkline, latest value, min and max over the range) for each chosen metric series."""
    keys = [(m["metric"], labels_key(m["labels"])) for m in chosen]
    points = overview_store.series_points(conn, device_id, keys, since, until, raw_hours, GRAPH_POINTS)
    # History that covers only the end of the range (a new device) is read again over the time it covers, in
    # finer steps, and drawn over that time; the axis says so.
    starts = {k: line[0][0] for k, (line, _, _) in points.items() if line and line[0][0] - since > 0.1 * (until - since)}
    if starts:
        closer = overview_store.series_points(conn, device_id, list(starts), min(starts.values()), until, raw_hours, GRAPH_POINTS)
        points |= {k: found for k, found in closer.items() if found[0]}
    out = []
    for m, key in zip(chosen, keys, strict=True):
        unit = unit_of(m["metric"])
        title = _series_title(m["metric"], m["labels"])
        line, low, high = points[key]
        started = line[0][0] if key in starts and line else None
        out.append(
            Graph(
                title=title,
                metric=m["metric"],
                labels=m["labels"],
                unit=unit,
                now=fmt_value(m["value"], unit),
                min=fmt_value(low, unit) if low is not None else None,
                max=fmt_value(high, unit) if high is not None else None,
                points=len(line),
                started=started,
                svg=sparkline(line, started or since, until, title, unit),
            )
        )
    return out


def _window(range_: str) -> tuple[float, float]:
    until = time.time()
    return until - views.RANGE_SECONDS.get(range_, 86400), until


def key_graphs(conn: Connection, detail: DeviceDetail, range_: str, raw_hours: int) -> list[Graph]:
    """Graphs of the device's key metrics (CPU, memory, latency of each check ...) over a range."""
    order = [metric for metric, _ in views.GRAPHS]
    seen: set[tuple[str, str]] = set()
    chosen = []
    for m in detail["metrics"]:
        labels = m["labels"]
        key = (m["metric"], labels_key(labels))
        if m["metric"] not in order or (labels and set(labels) - {"check", "perf"}) or key in seen:
            continue
        seen.add(key)
        chosen.append(m)
    chosen.sort(key=lambda m: (order.index(m["metric"]), _series_title(m["metric"], m["labels"])))
    return _graphs(conn, detail["id"], chosen, *_window(range_), raw_hours)


def metric_graphs(
    conn: Connection, detail: DeviceDetail, metrics: list[str], range_: str, raw_hours: int, label: dict[str, str] | None = None
) -> list[Graph]:
    """Graphs of the named metrics, one per label set (those matching `label` only), at most MAX_SERIES."""
    seen: set[tuple[str, str]] = set()
    chosen: list[LatestMetric] = []
    for name in metrics:
        for m in detail["metrics"]:
            if m["metric"] != name or (label and any(m["labels"].get(k) != v for k, v in label.items())):
                continue
            key = (name, labels_key(m["labels"]))
            if key in seen or len(chosen) >= MAX_SERIES:
                continue
            seen.add(key)
            chosen.append(m)
    return _graphs(conn, detail["id"], chosen, *_window(range_), raw_hours)


def metric_index(detail: DeviceDetail) -> list[MetricEntry]:
    """Every metric the device reports: name, title, unit, how many series, the latest value of the first."""
    found: dict[str, MetricEntry] = {}
    for m in detail["metrics"]:
        if m["metric"] in found:
            found[m["metric"]]["series"] += 1
            continue
        unit = unit_of(m["metric"])
        found[m["metric"]] = MetricEntry(
            metric=m["metric"], title=TITLES.get(m["metric"], m["metric"]), series=1, unit=unit, now=fmt_value(m["value"], unit)
        )
    return sorted(found.values(), key=lambda e: (str(e["title"]).lower(), e["metric"]))
