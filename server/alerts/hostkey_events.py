"""Security events raised from poll results, written in the same transaction as the results."""

from __future__ import annotations

from server.store.accounts import write_audit
from server.store.alerts import fire_event_alert, resolve_event_alert
from server.store.db import Connection
from server.store.hostkeys import device_name
from server.store.status import CheckOutcome, StatusMap, Transition

HOST_KEY_RULE = "ssh-host-key-changed"


def host_key_hook(
    conn: Connection, _transitions: list[Transition], outcomes: list[CheckOutcome], _status: StatusMap
) -> None:
    """A changed SSH host key raises a critical alert (and an audit entry); a good login later clears it."""
    for o in outcomes:
        if o.kind != "ssh":
            continue
        facts = o.facts or {}
        if facts.get("ssh_host_key_problem") == "changed":
            name = device_name(conn, o.device_id)
            fingerprint = str(facts.get("ssh_host_key_fingerprint") or "unknown")
            new = fire_event_alert(
                conn,
                HOST_KEY_RULE,
                o.device_id,
                "",
                "critical",
                f"SSH host key of {name} changed — polling stopped before signing in",
                o.ts,
                f"offered {fingerprint}; if the server was not reinstalled, treat this as an attack. {o.error or ''}",
            )
            if new:
                write_audit(conn, None, "security.ssh_host_key_changed", name, {"fingerprint": fingerprint, "check": o.check})
        elif o.ok:
            resolve_event_alert(conn, HOST_KEY_RULE, o.device_id, "", o.ts, "signed in with a trusted host key again")
