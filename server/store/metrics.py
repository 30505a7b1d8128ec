"""Metric history: series ids, raw samples, 5-minute and 1-hour rollups, retention."""

from __future__ import annotations

import json
import math
import sys
import time
from array import array
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any, NotRequired, TypedDict, TypeVar, cast

from sqlalchemy import Connection, and_, delete, func, select
from sqlalchemy.sql.elements import ColumnElement

from server.logsafe import CONTROL_IN_JSON, visible
from server.store import meta, partitions
from server.store.db import insert_ignore, insert_returning
from server.store.jsontypes import JsonValue
from server.store.schema import rollups, samples, series

LABEL_VALUE_CAP = 128
LATE_SECONDS = 180  # leave room for polls still in flight before a bucket is closed


def clean_text(value: str) -> str:
    """Text every column and every UTF-8 response can hold and any terminal can show: lone surrogates replaced,
    control characters made visible (ESC is stored as the four characters \\x1b; newlines and tabs stay)."""
    return visible(value.encode("utf-8", "replace").decode("utf-8"), multiline=True)


R = TypeVar("R", bound=Mapping[str, object])


class HistoryPoint(TypedDict):
    """One point of a metric's history: raw (ts, value) or a rollup (its average, with min and max)."""

    labels: str
    ts: float
    value: float
    min: NotRequired[float]
    max: NotRequired[float]


def _scrub(value: object) -> JsonValue:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {clean_text(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value if value is None or isinstance(value, int | float) else clean_text(str(value))


def clean_json(value: object) -> JsonValue:
    """JSON both databases accept, UTF-8 responses can carry and terminals can show (walked only when needed)."""
    try:
        dumped = json.dumps(value, allow_nan=False, ensure_ascii=False)
        dumped.encode("utf-8")
    except (TypeError, ValueError):  # NaN/inf, lone surrogates (UnicodeEncodeError), odd types
        return _scrub(value)
    return _scrub(value) if CONTROL_IN_JSON.search(dumped) else cast(JsonValue, value)  # json.dumps took it as it is


def clean_record(value: R) -> R:
    """clean_json for a record (a TypedDict of JSON values): the same keys and nesting come back, their text made
    visible; a non-finite number reads as None (so such fields are typed `float | None`)."""
    return cast(R, clean_json(value))


def labels_key(labels: dict[str, str]) -> str:
    """Canonical text for a label set (sorted JSON, values capped)."""
    if not labels:
        return ""
    return json.dumps({k: clean_text(str(v)[:LABEL_VALUE_CAP]) for k, v in sorted(labels.items())}, separators=(",", ":"))


def labels_of(key: str) -> dict[str, str]:
    """Inverse of labels_key."""
    if not key:
        return {}
    value = json.loads(key)
    return value if isinstance(value, dict) else {}


PAIR_CACHE_MAX = 200_000
_pairs: dict[tuple[str, str], tuple[str, str]] = {}


def series_key(metric: str, labels: str) -> tuple[str, str]:
    """The one shared (metric, labels key) tuple for a series key.

    Every device's rate memory and series ids are keyed by these shared objects, so a label set that
    thousands of devices have (ifIndex 1, eth0, ...) is held once, not once per device and cache.
    Thread-safe enough: both threads only get and set; a clear only loses sharing, never a key.
    """
    key = (metric, labels)
    found = _pairs.get(key)
    if found is None:
        if len(_pairs) >= PAIR_CACHE_MAX:
            _pairs.clear()
        found = _pairs[key] = (sys.intern(metric), sys.intern(labels))
    return found


SHAPE_CACHE_MAX = 5_000  # bounds the key tuples held here (~2 KB each) when every device differs
_shapes: dict[tuple[tuple[str, str], ...], dict[tuple[str, str], int]] = {}


def shared_index(index: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The one dict equal to `index`, a map of series keys to slots 0..n-1 in insertion order.

    Devices of one model have the same series in the same order, so their caches share one such dict and
    keep only their own values in arrays. A shared dict is never changed: callers copy it before adding a key.
    """
    shape = tuple(index)
    found = _shapes.get(shape)
    if found is None:
        if len(_shapes) >= SHAPE_CACHE_MAX:
            _shapes.clear()
        found = _shapes[shape] = index
    return found


class _DeviceSeries:
    """One device's series ids: series key -> slot (a shared dict), ids in an int64 array."""

    __slots__ = ("ids", "index")

    def __init__(self, index: dict[tuple[str, str], int], ids: array[int]) -> None:
        self.index = index
        self.ids = ids

    def get(self, key: tuple[str, str]) -> int | None:
        slot = self.index.get(key)
        return None if slot is None else self.ids[slot]


class SeriesCache:
    """Maps (device, metric, labels) to a series id, creating rows on first sight.

    Per device a dict of shared (metric, labels) keys to slots and an int64 array of ids: about 60 bytes per series.
    """

    def __init__(self) -> None:
        self._ids: dict[int, _DeviceSeries] = {}

    def forget_device(self, device_id: int) -> None:
        """Drop cached ids of a deleted device."""
        self._ids.pop(device_id, None)

    def get(self, device_id: int, metric: str, labels: str) -> int | None:
        """The cached id of one series, if known."""
        known = self._ids.get(device_id)
        return None if known is None else known.get((metric, labels))

    def _load(self, conn: Connection, device_ids: set[int]) -> None:
        """Read these devices' series ids: one query for the lot (a first poll of many devices comes in one batch)."""
        found: dict[int, list[tuple[str, str, int]]] = {d: [] for d in device_ids}
        query = select(series.c.device_id, series.c.metric, series.c.labels, series.c.id).where(
            series.c.device_id.in_(sorted(device_ids)))
        for device_id, metric, labels, series_id in conn.execute(query):
            found[device_id].append((metric, labels, series_id))
        for device_id, rows in found.items():
            self._set(device_id, rows)

    def _set(self, device_id: int, rows: list[tuple[str, str, int]]) -> None:
        index: dict[tuple[str, str], int] = {}
        ids = array("q")
        for metric, labels, series_id in sorted(rows):  # one order for every device: devices of a model share it
            index[series_key(metric, labels)] = len(ids)
            ids.append(series_id)
        self._ids[device_id] = _DeviceSeries(shared_index(index), ids)

    def _add(self, device_id: int, rows: list[tuple[str, str, int]]) -> None:
        """Add new series to a device's cached ids (its index rebuilt once, in the shared order)."""
        known = self._ids.get(device_id)
        if known is not None:
            rows = rows + [(metric, labels, known.ids[slot]) for (metric, labels), slot in known.index.items()]
        self._set(device_id, rows)

    def resolve(self, conn: Connection, keys: Iterable[tuple[int, str, str]]) -> dict[tuple[int, str, str], int]:
        """Ids for all keys, creating the missing series in this transaction.

        A device's ids are read once, when this cache does not know the device yet; series new to a known device
        (a second poll brings its rate series) are inserted and their ids come back from the insert itself, so
        the device's other series are not read again. A series another writer inserted first (the insert skips
        it) is read, with its device, after.
        """
        wanted = set(keys)
        missing = [k for k in wanted if self.get(*k) is None]
        unknown_devices = {d for d, _, _ in missing if d not in self._ids}
        if unknown_devices:
            self._load(conn, unknown_devices)
            missing = [k for k in missing if self.get(*k) is None]
        if missing:
            created: dict[int, list[tuple[str, str, int]]] = {}
            for device_id, metric, labels, series_id in insert_returning(
                conn, series, [{"device_id": d, "metric": m, "labels": lbl} for d, m, lbl in sorted(missing)],
                (series.c.device_id, series.c.metric, series.c.labels, series.c.id),
            ):
                created.setdefault(device_id, []).append((metric, labels, series_id))
            for device_id, rows in created.items():
                self._add(device_id, rows)
            raced = {k[0] for k in missing if self.get(*k) is None}
            if raced:
                self._load(conn, raced)
        out: dict[tuple[int, str, str], int] = {}
        for k in wanted:
            found = self.get(*k)
            if found is not None:
                out[k] = found
        return out


COPY_FROM = 200  # rows: below this a COPY's extra statements cost more than they save
_INSERT_QMARK = "INSERT INTO samples (series_id, ts, value) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_INSERT_FORMAT = "INSERT INTO samples (series_id, ts, value) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"


# A session's staging table: emptied in place at every commit (no new file, no catalog churn); each call moves its rows.
_STAGE = ("CREATE TEMP TABLE IF NOT EXISTS samples_in (series_id integer, ts bigint, value double precision) "
          "ON COMMIT DELETE ROWS")  # fmt: skip
_FROM_STAGE = ("WITH moved AS (DELETE FROM samples_in RETURNING series_id, ts, value) INSERT INTO samples "
               "(series_id, ts, value) SELECT series_id, ts, value FROM moved ON CONFLICT DO NOTHING")  # fmt: skip


def _copy_samples(conn: Connection, rows: list[tuple[int, int, float]]) -> None:
    """PostgreSQL: COPY into a session's staging table, then one INSERT … SELECT (about a third of executemany's CPU
    per row, measured by bench/pg_samples.py); existing (series, ts) rows are kept."""
    driver = conn.connection.driver_connection
    with driver.cursor() as cur:  # type: ignore[union-attr]
        cur.execute(_STAGE)
        with cur.copy("COPY samples_in (series_id, ts, value) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cur.execute(_FROM_STAGE)


def _insert_samples(conn: Connection, rows: list[tuple[int, int, float]]) -> None:
    """(series_id, ts, value) tuples straight to the driver's executemany; existing (series, ts) rows are kept."""
    style = conn.dialect.paramstyle
    if conn.dialect.name == "postgresql" and len(rows) >= COPY_FROM and hasattr(conn.connection.driver_connection, "cursor"):
        _copy_samples(conn, rows)
    elif conn.dialect.name in ("sqlite", "postgresql") and style in ("qmark", "format", "pyformat"):
        conn.exec_driver_sql(_INSERT_QMARK if style == "qmark" else _INSERT_FORMAT, rows)
    else:
        insert_ignore(conn, samples, [{"series_id": s, "ts": ts, "value": v} for s, ts, v in rows])


_SERIES_ID = itemgetter(0)


def write_samples(conn: Connection, cache: SeriesCache, rows: list[tuple[int, str, str, int, float]]) -> int:
    """Insert (device_id, metric, labels, ts, value) rows; returns how many were written."""
    if not rows:
        return 0
    batch: list[tuple[int, int, float]] = []
    unknown: list[tuple[int, str, str, int, float]] = []
    per_device = cache._ids
    known: _DeviceSeries | None = None
    device = None
    for row in rows:
        if row[0] != device:  # rows come grouped by device
            device = row[0]
            known = per_device.get(device)
        slot = None if known is None else known.index.get((row[1], row[2]))
        if slot is None:
            unknown.append(row)
        else:
            batch.append((known.ids[slot], row[3], row[4]))  # type: ignore[union-attr]
    if unknown:
        found = cache.resolve(conn, ((d, m, lbl) for d, m, lbl, _, _ in unknown))
        batch.extend((found[(d, m, lbl)], ts, v) for d, m, lbl, ts, v in unknown if (d, m, lbl) in found)
    if batch:
        # In key order the index B-tree is walked once, left to right: a batch of thousands of rows then touches
        # each index page once instead of hopping between pages at random (several times faster on a large table).
        batch.sort(key=_SERIES_ID)  # ints compare quicker than tuples: half the sort's time
        _insert_samples(conn, batch)
    return len(batch)


def rollup(conn: Connection, now: float | None = None) -> dict[int, int]:
    """Aggregate completed buckets (raw → 5 min → 1 h) since the last run; idempotent."""
    now = time.time() if now is None else now
    done: dict[int, int] = {}
    for resolution, source in ((300, None), (3600, 300)):
        mark_key = f"rollup_{resolution}_until"
        start = int(meta.get(conn, mark_key) or 0)
        end = int((now - LATE_SECONDS) // resolution * resolution)
        if end <= start:
            done[resolution] = 0
            continue
        # min, max, mean and count per series and bucket: of raw samples, or of the finer rollups (count-weighted).
        of_source: tuple[ColumnElement[bool], ...] = ()
        figures: tuple[ColumnElement[Any], ...]
        if source is None:
            table = samples
            figures = (func.min(samples.c.value), func.max(samples.c.value), func.avg(samples.c.value), func.count())
        else:
            c = rollups.c
            table, of_source = rollups, (c.resolution == source,)
            figures = (func.min(c.vmin), func.max(c.vmax), func.sum(c.vavg * c.n) / func.sum(c.n), func.sum(c.n))
        bucket = (table.c.ts // resolution) * resolution
        query = (
            select(table.c.series_id, bucket.label("bucket"), *figures)
            .where(*of_source, table.c.ts >= start, table.c.ts < end)
            .group_by(table.c.series_id, bucket)
        )
        rows = [
            {
                "series_id": r[0],
                "resolution": resolution,
                "ts": int(r[1]),
                "vmin": r[2],
                "vmax": r[3],
                "vavg": float(r[4]),
                "n": int(r[5]),
            }
            for r in conn.execute(query)
        ]
        for i in range(0, len(rows), 5000):
            insert_ignore(conn, rollups, rows[i : i + 5000])
        meta.put(conn, mark_key, str(end))
        done[resolution] = len(rows)
    return done


def expire(conn: Connection, raw_hours: int, days_5m: int, days_1h: int, now: float | None = None) -> int:
    """Delete raw samples and rollups past their retention; returns rows removed."""
    now = time.time() if now is None else now
    partitions.maintain(conn, now, raw_hours)  # PostgreSQL: whole days dropped, the next days made ready
    removed = conn.execute(delete(samples).where(samples.c.ts < int(now - raw_hours * 3600))).rowcount or 0
    for resolution, days in ((300, days_5m), (3600, days_1h)):
        cutoff = int(now - days * 86400)
        removed += (
            conn.execute(delete(rollups).where(and_(rollups.c.resolution == resolution, rollups.c.ts < cutoff))).rowcount or 0
        )
    return int(removed)


def history(
    conn: Connection, device_id: int, metric: str, since: float, until: float, raw_hours: int, labels: str | None = None
) -> list[HistoryPoint]:
    """Points of one metric (all its label sets unless `labels` is given), from the finest source that covers `since`."""
    where = [series.c.device_id == device_id, series.c.metric == metric]
    if labels is not None:
        where.append(series.c.labels == labels)
    ids = {r.id: r.labels for r in conn.execute(select(series.c.id, series.c.labels).where(*where))}
    if not ids:
        return []
    span = time.time() - since
    out: list[HistoryPoint] = []
    span -= 300  # the caller's "now" is a moment earlier than ours: don't fall off a boundary
    if span <= raw_hours * 3600:
        query = (
            select(samples.c.series_id, samples.c.ts, samples.c.value)
            .where(samples.c.series_id.in_(ids), samples.c.ts >= int(since), samples.c.ts <= int(until))
            .order_by(samples.c.series_id, samples.c.ts)
        )
        for sid, ts, value in conn.execute(query):
            out.append({"labels": ids[sid], "ts": ts, "value": value})
        return out
    resolution = 300 if span <= 30 * 86400 else 3600
    query = (
        select(rollups.c.series_id, rollups.c.ts, rollups.c.vavg, rollups.c.vmin, rollups.c.vmax)
        .where(
            rollups.c.series_id.in_(ids),
            rollups.c.resolution == resolution,
            rollups.c.ts >= int(since),
            rollups.c.ts <= int(until),
        )
        .order_by(rollups.c.series_id, rollups.c.ts)
    )
    for row in conn.execute(query):
        out.append({"labels": ids[row[0]], "ts": row[1], "value": row[2], "min": row[3], "max": row[4]})
    return out


