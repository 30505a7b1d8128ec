"""The audit log for people and tools: paged reading, and CSV / JSON Lines export that cannot be forged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NotRequired, TypedDict

from server.logsafe import escape
from server.store import audit as store
from server.store.audit import AuditRow
from server.store.db import Engine
from server.store.jsontypes import JsonObject

COLUMNS = ("id", "time", "user", "action", "target", "ip", "detail")
BATCH = 500
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def iso(ts: float) -> str:
    """A timestamp as ISO 8601 UTC."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class AuditItem(TypedDict):
    """One audit entry for people and tools; `said`: an action entry in words (the paged view only)."""

    id: int
    time: str
    ts: float
    user: str | None
    action: str
    target: str
    ip: str
    detail: JsonObject
    said: NotRequired[str]


class AuditPage(TypedDict):
    """A page of the log, newest first; `next_before` pages further back."""

    items: list[AuditItem]
    total: int
    next_before: int | None


def entry(row: AuditRow) -> AuditItem:
    """One audit row as a plain dict."""
    return {
        "id": row.id,
        "time": iso(row.ts),
        "ts": row.ts,
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


def _rows(engine: Engine) -> Iterator[AuditRow]:
    last = 0
    while True:
        with engine.connect() as conn:
            batch = store.after(conn, last, BATCH)
        if not batch:
            return
        yield from batch
        last = batch[-1].id


def export_csv(engine: Engine) -> Iterator[str]:
    """The whole log, oldest first, as CSV text in chunks."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for n, row in enumerate(_rows(engine), 1):
        item: dict[str, object] = dict(entry(row))
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


REFUSAL_WORDS = {403: "not allowed", 404: "not found", 409: "conflict", 422: "not accepted"}


def _text(value: Any, limit: int = 200) -> str:
    return " ".join(str(value or "").split())[:limit]


def said(item: AuditItem) -> str:
    """An action entry in words: who did (or was refused) what, where, and why ("" for entries read as they are)."""
    d, who = item["detail"] if isinstance(item["detail"], dict) else {}, item["user"] or "someone"
    what, _, where = str(item["target"]).partition("@")
    where = f" on {where}" if where and where != "-" else ""
    match item["action"]:
        case "action.refused":
            code = d.get("status")  # an int, as actions.gate writes it
            status = REFUSAL_WORDS.get(code if isinstance(code, int) else 0, "")
            because = _text(d.get("why"), 300) or "no reason recorded"
            return f"{who} was refused {what}{where}: {because}" + (f" ({status})" if status else "")
        case "action.run":
            reason = f"; reason: {_text(d.get('reason'))}" if d.get("reason") else ""
            alert = f" for alert #{d['alert']}" if d.get("alert") else ""
            return f"{who} ran {what}{where} (run #{d.get('run')}){alert}{reason}"
        case "action.finished":
            return f"run #{d.get('run')} of {what}{where} by {who} ended: {_text(d.get('status'), 40)}"
        case "action.verified":
            return f"run #{d.get('run')} of {what}{where} by {who}: {_text(d.get('detail'), 300)}"
    return ""


def page(engine: Engine, limit: int, before: int | None) -> AuditPage:
    """Newest entries first, `limit` at a time, action entries also in words; `next_before` pages further back."""
    with engine.connect() as conn:
        items = [entry(r) for r in store.newest(conn, limit, before)]
        total = store.count(conn)
    for item in items:
        item["said"] = said(item)
    return {"items": items, "total": total, "next_before": items[-1]["id"] if len(items) == limit else None}
