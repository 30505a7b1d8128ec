"""The audit log for people and tools: paged reading, and CSV / JSON Lines export that cannot be forged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from server.logsafe import escape
from server.store.schema import audit

COLUMNS = ("id", "time", "user", "action", "target", "ip", "detail")
BATCH = 500
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def iso(ts: float) -> str:
    """A timestamp as ISO 8601 UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def entry(row: Any) -> dict[str, Any]:
    """One audit row as a plain dict."""
    return {
        "id": int(row.id),
        "time": iso(row.ts),
        "ts": float(row.ts),
        "user": row.username,
        "action": row.action,
        "target": row.target or "",
        "ip": row.ip or "",
        "detail": row.detail or {},
    }


def csv_cell(value: Any) -> str:
    """One CSV cell: a single line, and never a spreadsheet formula (=, +, -, @ get a leading quote)."""
    text = escape(json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else ("" if value is None else value))
    return "'" + text if text.startswith(_FORMULA) else text


def _rows(engine: Engine) -> Iterator[Any]:
    last = 0
    while True:
        with engine.connect() as conn:
            batch = list(conn.execute(select(audit).where(audit.c.id > last).order_by(audit.c.id).limit(BATCH)))
        if not batch:
            return
        yield from batch
        last = int(batch[-1].id)


def export_csv(engine: Engine) -> Iterator[str]:
    """The whole log, oldest first, as CSV text in chunks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, row in enumerate(_rows(engine), 1):
        item = entry(row)
        writer.writerow([csv_cell(item[c]) for c in COLUMNS])
        if n % BATCH == 0:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()


def export_jsonl(engine: Engine) -> Iterator[str]:
    """The whole log, oldest first, one JSON object per line (newlines inside values are escaped by JSON)."""
    chunk: list[str] = []
    for row in _rows(engine):
        chunk.append(json.dumps(entry(row), ensure_ascii=True, sort_keys=True) + "\n")
        if len(chunk) >= BATCH:
            yield "".join(chunk)
            chunk = []
    yield "".join(chunk)


def page(engine: Engine, limit: int, before: int | None) -> dict[str, Any]:
    """Newest entries first, `limit` at a time; `next_before` pages further back."""
    with engine.connect() as conn:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(audit.c.id < before)
        items = [entry(r) for r in conn.execute(query)]
        total = int(conn.execute(select(func.count()).select_from(audit)).scalar() or 0)
    return {"items": items, "total": total, "next_before": items[-1]["id"] if len(items) == limit else None}
