"""Metric history: series ids, raw samples, 5-minute and 1-hour rollups, retention."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite

from server.store.schema import meta, rollups, samples, series

RESOLUTIONS = (300, 3600)
LABEL_VALUE_CAP = 128
LATE_SECONDS = 180  # leave room for polls still in flight before a bucket is closed


def clean_text(value: str) -> str:
    """Text every column and every UTF-8 response can hold: NULs dropped, lone surrogates replaced."""
    return value.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {clean_text(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value if value is None or isinstance(value, int | float) else clean_text(str(value))


def clean_json(value: Any) -> Any:
    """JSON both databases accept and UTF-8 responses can carry (walked only when the fast check fails)."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError):  # NaN/inf, lone surrogates (UnicodeEncodeError), odd types
        return _scrub(value)
    return value


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


def insert_ignore(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping ones whose key exists (both dialects)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows))
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), list(rows))
    else:
        conn.execute(insert(table).prefix_with("IGNORE"), list(rows))


class SeriesCache:
    """Maps (device, metric, labels) to a series id, creating rows on first sight."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, str, str], int] = {}

    def forget_device(self, device_id: int) -> None:
        """Drop cached ids of a deleted device."""
        self._ids = {k: v for k, v in self._ids.items() if k[0] != device_id}

    def resolve(self, conn: Connection, keys: Iterable[tuple[int, str, str]]) -> dict[tuple[int, str, str], int]:
        """Ids for all keys, creating the missing series in this transaction."""
        wanted = set(keys)
        missing = [k for k in wanted if k not in self._ids]
        if missing:
            for device_id in {k[0] for k in missing}:
                rows = conn.execute(select(series.c.id, series.c.metric, series.c.labels).where(series.c.device_id == device_id))
                for row in rows:
                    self._ids[(device_id, row.metric, row.labels)] = row.id
            new = [k for k in missing if k not in self._ids]
            if new:
                insert_ignore(conn, series, [{"device_id": d, "metric": m, "labels": lbl} for d, m, lbl in new])
                for device_id in {k[0] for k in new}:
                    rows = conn.execute(
                        select(series.c.id, series.c.metric, series.c.labels).where(series.c.device_id == device_id)
                    )
                    for row in rows:
                        self._ids[(device_id, row.metric, row.labels)] = row.id
        return {k: self._ids[k] for k in wanted if k in self._ids}


def write_samples(conn: Connection, cache: SeriesCache, rows: list[tuple[int, str, str, int, float]]) -> int:
    """Insert (device_id, metric, labels, ts, value) rows; returns how many were written."""
    if not rows:
        return 0
    ids = cache.resolve(conn, ((d, m, lbl) for d, m, lbl, _, _ in rows))
    batch = [{"series_id": ids[(d, m, lbl)], "ts": ts, "value": v} for d, m, lbl, ts, v in rows if (d, m, lbl) in ids]
    insert_ignore(conn, samples, batch)
    return len(batch)


def _get_meta(conn: Connection, key: str) -> str | None:
    value = conn.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
    return None if value is None else str(value)


def _set_meta(conn: Connection, key: str, value: str) -> None:
    if conn.execute(select(meta.c.key).where(meta.c.key == key)).first():
        conn.execute(meta.update().where(meta.c.key == key).values(value=value))
    else:
        conn.execute(insert(meta).values(key=key, value=value))


def rollup(conn: Connection, now: float | None = None) -> dict[int, int]:
    """Aggregate completed buckets (raw → 5 min → 1 h) since the last run; idempotent."""
    now = time.time() if now is None else now
    done: dict[int, int] = {}
    for resolution, source in ((300, None), (3600, 300)):
        mark_key = f"rollup_{resolution}_until"
        start = int(_get_meta(conn, mark_key) or 0)
        end = int((now - LATE_SECONDS) // resolution * resolution)
        if end <= start:
            done[resolution] = 0
            continue
        if source is None:
            bucket = (samples.c.ts // resolution) * resolution
            query = (
                select(
                    samples.c.series_id,
                    bucket.label("bucket"),
                    func.min(samples.c.value),
                    func.max(samples.c.value),
                    func.avg(samples.c.value),
                    func.count(),
                )
                .where(samples.c.ts >= start, samples.c.ts < end)
                .group_by(samples.c.series_id, bucket)
            )
        else:
            bucket = (rollups.c.ts // resolution) * resolution
            query = (
                select(
                    rollups.c.series_id,
                    bucket.label("bucket"),
                    func.min(rollups.c.vmin),
                    func.max(rollups.c.vmax),
                    func.sum(rollups.c.vavg * rollups.c.n) / func.sum(rollups.c.n),
                    func.sum(rollups.c.n),
                )
                .where(rollups.c.resolution == source, rollups.c.ts >= start, rollups.c.ts < end)
                .group_by(rollups.c.series_id, bucket)
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
        _set_meta(conn, mark_key, str(end))
        done[resolution] = len(rows)
    return done


def expire(conn: Connection, raw_hours: int, days_5m: int, days_1h: int, now: float | None = None) -> int:
    """Delete raw samples and rollups past their retention; returns rows removed."""
    now = time.time() if now is None else now
    removed = conn.execute(delete(samples).where(samples.c.ts < int(now - raw_hours * 3600))).rowcount or 0
    for resolution, days in ((300, days_5m), (3600, days_1h)):
        cutoff = int(now - days * 86400)
        removed += (
            conn.execute(delete(rollups).where(and_(rollups.c.resolution == resolution, rollups.c.ts < cutoff))).rowcount or 0
        )
    return int(removed)


def history(
    conn: Connection, device_id: int, metric: str, since: float, until: float, raw_hours: int, labels: str | None = None
) -> list[dict[str, Any]]:
    """Points of one metric (all its label sets unless `labels` is given), from the finest source that covers `since`."""
    where = [series.c.device_id == device_id, series.c.metric == metric]
    if labels is not None:
        where.append(series.c.labels == labels)
    ids = {r.id: r.labels for r in conn.execute(select(series.c.id, series.c.labels).where(*where))}
    if not ids:
        return []
    span = time.time() - since
    out: list[dict[str, Any]] = []
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


def sample_count(conn: Connection) -> int:
    """Raw sample rows (for /metrics)."""
    return int(conn.execute(text("SELECT count(*) FROM samples")).scalar() or 0)
