"""Security events raised from poll results, written in the same transaction as the results."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from server.store.accounts import write_audit
from server.store.schema import audit, devices
from server.store.status import CheckOutcome, Transition


def host_key_hook(
    conn: Connection, _transitions: list[Transition], outcomes: list[CheckOutcome], _status: dict[int, dict[str, Any]]
) -> None:
    """A changed SSH host key is recorded once per offered key as a security event in the audit log."""
    for o in outcomes:
        facts = o.facts or {}
        if facts.get("ssh_host_key_problem") != "changed":
            continue
        name = conn.execute(select(devices.c.name).where(devices.c.id == o.device_id)).scalar()
        fingerprint = str(facts.get("ssh_host_key_fingerprint") or "")
        seen = conn.execute(
            select(audit.c.id, audit.c.detail)
            .where(audit.c.action == "security.ssh_host_key_changed", audit.c.target == str(name))
            .order_by(audit.c.id.desc())
            .limit(1)
        ).first()
        if seen and (seen.detail or {}).get("fingerprint") == fingerprint:
            continue
        write_audit(
            conn,
            None,
            "security.ssh_host_key_changed",
            str(name),
            {"fingerprint": fingerprint, "check": o.check, "error": o.error},
        )
