"""/metrics in Prometheus text format: device states, latest metrics with labels, poller figures."""

from __future__ import annotations

import re
from collections.abc import Mapping

from server.polling.dispatch import InProcessDispatcher
from server.runtime import Services
from server.store.device_state import STATES
from server.store.metrics import labels_of
from server.store.overview import latest_metrics

_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Mapping[str, object]) -> str:
    inner = ",".join(f'{_NAME_BAD.sub("_", k)}="{_escape(v)}"' for k, v in pairs.items())
    return "{" + inner + "}"


def render(svc: Services) -> str:
    """The whole exposition text."""
    lines = [
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
                    key = "pocketnoc_" + _NAME_BAD.sub("_", metric)
                    own = {("exported_" + k if k in ("device", "check") else k): v for k, v in labels_of(labels).items()}
                    labelset = {"device": name, "check": check, **own}
                    metric_lines.setdefault(key, []).append(f"{key}{_labels(labelset)} {float(value)!r}")
    for key in sorted(metric_lines):
        lines.append(f"# TYPE {key} gauge")
        lines.extend(metric_lines[key])
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
    return "\n".join(lines) + "\n"
