"""Alert rules added through the API (the rules file is read by server.alerts.rules, not stored)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from server.store.schema import alert_rules


def definitions(conn: Connection) -> list[dict[str, Any]]:
    """Every API-added rule's definition, oldest first."""
    return [dict(d) for d in conn.execute(select(alert_rules.c.definition).order_by(alert_rules.c.id)).scalars()]
