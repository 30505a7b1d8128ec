"""Messages as the API and pages show them: each with its delivery receipts (and whether it may have gone twice)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, select

from server.store import deliveries
from server.store.notify_records import MessageView, Receipt
from server.store.schema import notify_deliveries, notify_messages


def _with_receipts(conn: Connection, rows: list[Row[Any]]) -> list[MessageView]:
    receipts: dict[int, list[Receipt]] = {}
    if rows:
        d = notify_deliveries
        for r in conn.execute(select(d).where(d.c.message_id.in_([m.id for m in rows])).order_by(d.c.id)):
            receipts.setdefault(r.message_id, []).append(
                {"ts": r.ts, "result": r.result, "status": r.status, "detail": r.detail, "ms": r.ms}
            )
    return [_view(m, receipts.get(m.id, [])) for m in rows]


def _view(row: Row[Any], receipts: list[Receipt]) -> MessageView:
    return {**row._mapping, "deliveries": receipts, "possible_duplicate": deliveries.possible_duplicate(receipts)}


def list_messages(conn: Connection, status: str = "", user_id: int | None = None, alert_id: int | None = None,
                  limit: int = 100, offset: int = 0) -> list[MessageView]:
    """Messages newest first, each with its delivery receipts."""
    m = notify_messages
    query = select(m).order_by(m.c.id.desc()).limit(limit).offset(offset)
    if status:
        query = query.where(m.c.status == status)
    if user_id is not None:
        query = query.where(m.c.user_id == user_id)
    if alert_id is not None:
        query = query.where(m.c.alert_id == alert_id)
    return _with_receipts(conn, list(conn.execute(query)))


def get_message(conn: Connection, message_id: int) -> MessageView | None:
    """One message with its receipts."""
    rows = list(conn.execute(select(notify_messages).where(notify_messages.c.id == message_id)))
    found = _with_receipts(conn, rows)
    return found[0] if found else None
