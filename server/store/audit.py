"""Reading the audit log (entries are written by store.accounts.record_audit, beside the change they record)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import Connection, func, select

from server.store.schema import audit


class AuditRow(NamedTuple):
    """One audit entry as stored."""

    id: int
    ts: float
    username: str | None
    action: str
    target: str | None
    ip: str | None
    detail: dict[str, Any]


def _row(r: Any) -> AuditRow:
    return AuditRow(int(r.id), float(r.ts), r.username, r.action, r.target, r.ip, r.detail or {})


def after(conn: Connection, last_id: int, limit: int) -> list[AuditRow]:
    """Up to `limit` entries with an id above `last_id`, oldest first."""
    query = select(audit).where(audit.c.id > last_id).order_by(audit.c.id).limit(limit)
    return [_row(r) for r in conn.execute(query)]


def newest(conn: Connection, limit: int, before: int | None) -> list[AuditRow]:
    """Up to `limit` entries, newest first, below id `before` when given."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit.c.id < before)
    return [_row(r) for r in conn.execute(query)]


def count(conn: Connection) -> int:
    """How many entries the log holds."""
    return int(conn.execute(select(func.count()).select_from(audit)).scalar() or 0)
