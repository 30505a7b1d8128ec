"""Applying check outcomes: device status, state transitions and samples in one transaction."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from server.store.device_state import CheckStatus, State, decide_state
from server.store.metrics import SeriesCache, clean_record, clean_text, write_samples
from server.store.schema import device_status, devices, state_events


@dataclass(slots=True)
class CheckOutcome:
    """What one run of one check produced, ready to store (rates already computed)."""

    device_id: int
    check: str
    kind: str
    ts: float
    ok: bool
    answered: bool
    duration_ms: float
    error: str | None = None
    facts: dict[str, Any] | None = None
    tables: dict[str, list[dict[str, Any]]] | None = None
    samples: list[tuple[str, str, float]] = field(default_factory=list)  # metric, labels key, value


@dataclass(frozen=True, slots=True)
class Transition:
    """A device changed state."""

    device_id: int
    ts: float
    old: State
    new: State
    reason: str


DEVICE_FACT_KINDS = frozenset({"snmp", "ssh"})
# device_status columns written after every batch ("tables" only when a table changed).
STATUS_COLUMNS = (
    "state", "state_since", "last_polled", "last_ok", "last_error", "failures", "poll_ms", "facts", "checks", "metrics"
)


@dataclass(slots=True)
class DeviceStatus:
    """A device's status row (device_status, plus whether the device is enabled) as a batch of outcomes leaves it."""

    state: State
    state_since: float
    enabled: bool = True
    last_polled: float | None = None
    last_ok: float | None = None
    last_error: str | None = None
    failures: int = 0
    poll_ms: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)  # check name -> CheckStatus as stored
    metrics: dict[str, list[Any]] = field(default_factory=dict)  # check name -> [(metric, labels key, value), ...]


StatusMap = dict[int, DeviceStatus]  # device id -> its status after the batch
# A hook sees the transaction, the transitions, the outcomes and the devices' status after them.
Hook = Callable[[Connection, list[Transition], list[CheckOutcome], StatusMap], None]


def make_storable(o: CheckOutcome) -> None:
    """Clean device-supplied text and numbers in place: one hostile value must never make a commit fail forever."""
    if o.error:
        o.error = clean_text(o.error)
    if o.facts:
        o.facts = clean_record(o.facts)
    if o.tables:
        o.tables = clean_record(o.tables)
    _clean_samples(o)


def _clean_samples(o: CheckOutcome) -> None:
    values = [v for _, _, v in o.samples]
    # All floats and a finite sum (an infinity or NaN makes the sum one): nothing to clean. Checked in C, not value by
    # value (~200 samples a poll); the element-wise pass runs only when this says it must.
    if set(map(type, values)) <= {float} and math.isfinite(sum(values)):
        return
    o.samples = [(m, lbl, float(v)) for m, lbl, v in o.samples if _finite_number(v)]


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _same_tables(o: CheckOutcome, stored: dict[str, Any]) -> bool:
    """True when every table of the outcome equals the stored one (which was cleaned when it was stored)."""
    tables = o.tables
    return tables is not None and all(stored.get(name, _MISSING) == rows for name, rows in tables.items())


_MISSING = object()


SampleRow = tuple[int, str, str, int, float]  # device id, metric, labels key, ts, value


def apply_outcomes(
    conn: Connection, outcomes: list[CheckOutcome], cache: SeriesCache, threshold: int, hooks: list[Hook],
    held: list[SampleRow] | None = None,
) -> list[Transition]:
    """Store a batch of outcomes (caller holds the transaction); returns the state transitions.

    With `held` (the disk is full) the samples are put there instead of written: states and alerts still are.
    """
    ids = sorted({o.device_id for o in outcomes})
    rows = {
        r.device_id: r
        for r in conn.execute(
            select(device_status, devices.c.enabled)
            .join(devices, devices.c.id == device_status.c.device_id)
            .where(device_status.c.device_id.in_(ids))
            .order_by(device_status.c.device_id)
            # Several writers (queue workers) may store checks of one device at once: lock its row, in id order.
            .with_for_update(of=device_status)
        )
    }
    status: StatusMap = {
        device_id: DeviceStatus(
            state=row.state,
            state_since=row.state_since,
            enabled=row.enabled,
            last_polled=row.last_polled,
            last_ok=row.last_ok,
            last_error=row.last_error,
            failures=row.failures,
            poll_ms=row.poll_ms,
            facts=dict(row.facts or {}),
            tables=dict(row.tables or {}),
            checks=dict(row.checks or {}),
            metrics=dict(row.metrics or {}),
        )
        for device_id, row in rows.items()
    }
    sample_rows: list[SampleRow] = []
    tables_changed: set[int] = set()
    for o in outcomes:
        st = status.get(o.device_id)
        same_tables = bool(o.tables) and st is not None and _same_tables(o, st.tables)
        if same_tables:  # unchanged (an interface table rarely changes): nothing to clean, nothing to rewrite
            if o.error:
                o.error = clean_text(o.error)
            if o.facts:
                o.facts = clean_record(o.facts)
            _clean_samples(o)
        else:
            make_storable(o)
        if st is None:  # device deleted while its poll was in flight
            continue
        previous = st.checks.get(o.check) or {}
        fails = 0 if o.ok else int(previous.get("fails") or 0) + 1
        st.checks[o.check] = {
            "kind": o.kind,
            "ok": o.ok,
            "answered": o.answered,
            "fails": fails,
            "error": o.error,
            "ts": o.ts,
            "ms": round(o.duration_ms, 1),
            "since": previous.get("since") if previous.get("ok") == o.ok else o.ts,
        }
        st.last_polled = o.ts
        st.poll_ms = round(o.duration_ms, 1)
        if o.ok:
            st.last_ok = o.ts
        if o.facts and o.kind in DEVICE_FACT_KINDS:
            st.facts.update(o.facts)
        elif o.facts:  # facts of ping/TCP/HTTP checks belong to the check, not the device
            st.checks[o.check]["facts"] = {k: v for k, v in o.facts.items() if v is not None}
        if o.tables and not same_tables:
            st.tables.update(o.tables)
            tables_changed.add(o.device_id)
        if o.ok or o.samples:
            st.metrics[o.check] = o.samples  # (metric, labels, value) tuples: JSON arrays once stored
        st.failures = sum(int(c.get("fails") or 0) > 0 for c in st.checks.values())
        errors = [f"{name}: {c['error']}" for name, c in sorted(st.checks.items()) if not c.get("ok") and c.get("error")]
        st.last_error = "; ".join(errors)[:2000] or None
        ts = int(o.ts)
        device_id = o.device_id
        sample_rows += [(device_id, m, lbl, ts, v) for m, lbl, v in o.samples]
    transitions: list[Transition] = []
    latest_ts = {o.device_id: o.ts for o in outcomes}
    for device_id, st in status.items():
        checks = {name: CheckStatus.from_dict(c) for name, c in st.checks.items()}
        new, reason = decide_state(checks, st.state, threshold, st.enabled)
        if new != st.state:
            when = latest_ts[device_id]
            transitions.append(Transition(device_id, when, st.state, new, reason))
            st.state, st.state_since = new, when
    if transitions:
        conn.execute(
            insert(state_events),
            [
                {"device_id": t.device_id, "ts": t.ts, "old_state": t.old, "new_state": t.new, "reason": t.reason[:2000]}
                for t in transitions
            ],
        )
    # The interface table is the largest column: rewrite it only for devices whose tables changed.
    for changed in (False, True):
        ids_now = [d for d in status if (d in tables_changed) == changed]
        if not ids_now:
            continue
        columns = STATUS_COLUMNS + (("tables",) if changed else ())
        conn.execute(
            update(device_status)
            .where(device_status.c.device_id == bindparam("b_id"))
            .values({c: bindparam(f"v_{c}") for c in columns}),
            [{"b_id": device_id, **{f"v_{c}": getattr(status[device_id], c) for c in columns}} for device_id in ids_now],
        )
    if held is None:
        write_samples(conn, cache, sample_rows)
    else:
        held.extend(sample_rows)
    for hook in hooks:
        hook(conn, transitions, outcomes, status)
    return transitions
