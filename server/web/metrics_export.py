"""/metrics in Prometheus text format: device states, latest metrics with labels, poller figures."""

from __future__ import annotations

import gc
import re
from collections.abc import Mapping

from server.polling.dispatch import InProcessDispatcher
from server.runtime import Services
from server.store import shards
from server.store.device_state import STATES
from server.store.metrics import labels_of
from server.store.overview import latest_metrics
from server.store.workers import list_workers

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, object]) -> str:
    inner = ",".join(f'{_NAME_BAD.sub("_", k)}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + inner + "}"


def render(svc: Services, devices: bool = True) -> str:
    """The whole exposition text; without `devices`, only the process's own figures (poller, writer, dispatcher,
    workers): a scrape that costs nothing at any fleet size (the device part is every device's latest samples,
    ~2 million lines at 10,000 24-port switches)."""
    lines: list[str] = []
    if devices:
        _devices(svc, lines)
    _process(svc, lines)
    return "\n".join(lines) + "\n"


def _devices(svc: Services, lines: list[str]) -> None:
    lines += [
        "# HELP pocketnoc_device_state 1 for the device's current state.",
        "# TYPE pocketnoc_device_state gauge",
    ]
    metric_lines: dict[str, list[str]] = {}
    with svc.reader.connect() as conn:
        for name, state, metrics in latest_metrics(conn):
            for s in STATES:
                lines.append(f"pocketnoc_device_state{_labels({'device': name, 'state': s})} {int(s == state)}")
            for check, samples in metrics.items():
                for metric, labels, value in samples:
                    if not isinstance(value, int | float):  # a non-finite number is stored as null: no sample
                        continue
                    key = "pocketnoc_" + _NAME_BAD.sub("_", metric)
                    own = {("exported_" + k if k in ("device", "check") else k): v for k, v in labels_of(labels).items()}
                    labelset = {"device": name, "check": check, **own}
                    metric_lines.setdefault(key, []).append(f"{key}{_labels(labelset)} {float(value)!r}")
    for key in sorted(metric_lines):
        lines.append(f"# TYPE {key} gauge")
        lines.extend(metric_lines[key])


def _process(svc: Services, lines: list[str]) -> None:
    poller, writer = svc.poller, svc.writer
    if poller is not None:
        st = poller.stats
        lines += [
            "# TYPE pocketnoc_poller_checks_total counter",
            f'pocketnoc_poller_checks_total{{result="ok"}} {st.ok}',
            f'pocketnoc_poller_checks_total{{result="failed"}} {st.failed}',
            f'pocketnoc_poller_checks_total{{result="skipped_overlap"}} {st.skipped_overlap}',
            f'pocketnoc_poller_checks_total{{result="skipped_backoff"}} {st.skipped_backoff}',
            "# TYPE pocketnoc_poller_waited_for_writer_total counter",
            f"pocketnoc_poller_waited_for_writer_total {st.waited_for_writer}",
            "# TYPE pocketnoc_poller_in_flight gauge",
            f"pocketnoc_poller_in_flight {st.in_flight}",
            "# TYPE pocketnoc_poller_start_lag_seconds gauge",
            f'pocketnoc_poller_start_lag_seconds{{quantile="0.5"}} {st.lag_quantile(0.5):.3f}',
            f'pocketnoc_poller_start_lag_seconds{{quantile="0.99"}} {st.lag_quantile(0.99):.3f}',
            *_gc_lines(),
        ]
    dispatcher = svc.dispatcher
    if isinstance(dispatcher, InProcessDispatcher):
        lines += [
            "# TYPE pocketnoc_dispatch_queued gauge",
            f"pocketnoc_dispatch_queued {dispatcher.queued}",
            "# TYPE pocketnoc_dispatch_missed_turns_total counter",
            f"pocketnoc_dispatch_missed_turns_total {dispatcher.due.missed}",
        ]
    if writer is not None:
        recent = sorted(writer.batch_seconds)
        lines += [
            "# TYPE pocketnoc_writer_batch_seconds gauge",
            f'pocketnoc_writer_batch_seconds{{quantile="0.99"}} '
            f"{recent[int(0.99 * (len(recent) - 1))] if recent else 0.0:.3f}",
            f'pocketnoc_writer_batch_seconds{{quantile="1"}} {recent[-1] if recent else 0.0:.3f}',
            "# TYPE pocketnoc_writer_batches_total counter",
            f"pocketnoc_writer_batches_total {writer.batches}",
            "# TYPE pocketnoc_writer_samples_total counter",
            f"pocketnoc_writer_samples_total {writer.rows}",
            "# TYPE pocketnoc_writer_errors_total counter",
            f"pocketnoc_writer_errors_total {writer.errors}",
            "# TYPE pocketnoc_writer_backlog gauge",
            f"pocketnoc_writer_backlog {writer.backlog}",
        ]
    if svc.settings.scheduler == "queue":
        lines += _worker_lines(svc)


def _gc_lines() -> list[str]:
    """The process's garbage collector: collections by generation, the heap frozen while a poller runs."""
    lines = ["# HELP pocketnoc_gc_collections_total Garbage collections by generation (2: full).",
             "# TYPE pocketnoc_gc_collections_total counter"]
    lines += [f'pocketnoc_gc_collections_total{{generation="{g}"}} {st["collections"]}' for g, st in enumerate(gc.get_stats())]
    return [*lines, "# HELP pocketnoc_gc_frozen_objects Objects of the start-up heap the collector no longer walks.",
                    "# TYPE pocketnoc_gc_frozen_objects gauge", f"pocketnoc_gc_frozen_objects {gc.get_freeze_count()}"]


WORKER_GAUGES = (
    ("up", "1 while the worker reports (heartbeat within the silence limit)."),
    ("shard_devices", "Devices the scheduling leader assigns to the worker."),
    ("shard_weight", "The worker's weight in its pool (below 1 while it sheds devices because it fell behind)."),
    ("checks_per_minute", "Checks the worker finished over the last minute."),
    ("in_flight", "Checks running on the worker now."),
    ("load", "Checks in flight over the worker's concurrency."),
    ("start_lag_p95_seconds", "95th percentile of the worker's poll start lag over the last minute."),
)


def _worker_lines(svc: Services) -> list[str]:
    """Each queue worker's shard, load and lag (from its heartbeat row and the leader's assignment)."""
    with svc.reader.connect() as conn:
        rows = list_workers(conn, svc.settings.worker_silent_seconds, svc.settings.worker_dead_seconds)
        share = shards.shares(conn)
    values: dict[str, list[str]] = {key: [] for key, _ in WORKER_GAUGES}
    for w in rows:
        labels = _labels({"worker": w["name"], "site": w["site"] or "default"})
        mine = share.get(w["name"])
        figures = {
            "up": int(w["state"] == "running"),
            "shard_devices": mine["devices"] if mine else 0,
            "shard_weight": mine["weight"] if mine else 0.0,
            "checks_per_minute": w["checks_per_min"],
            "in_flight": w["in_flight"],
            "load": round(w["in_flight"] / w["concurrency"], 3) if w["concurrency"] else 0.0,
            "start_lag_p95_seconds": w["lag_p95"] if w["lag_p95"] is not None else "NaN",
        }
        for key, value in figures.items():
            values[key].append(f"pocketnoc_worker_{key}{labels} {value}")
    out: list[str] = []
    for key, text in WORKER_GAUGES:
        out += [f"# HELP pocketnoc_worker_{key} {text}", f"# TYPE pocketnoc_worker_{key} gauge", *values[key]]
    return out
