"""Reading terminal sessions and their recordings back (admins, from the audit page); each replay is audited."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth.principal import Principal
from server.runtime import Services
from server.services.errors import NotFound
from server.store import accounts
from server.store import terminal as store
from server.store.terminal import SessionRow


@dataclass(frozen=True, slots=True)
class Listing:
    """Live sessions of this process and the recorded ones, newest first."""

    live: list[SessionRow]
    recent: list[SessionRow]


def listing(svc: Services, live_ids: set[int], limit: int = 50) -> Listing:
    """Sessions for the admin's terminal page."""
    with svc.reader.connect() as conn:
        recent = store.recent(conn, limit)
        live = [row for row in (store.get(conn, i) for i in sorted(live_ids, reverse=True)) if row is not None]
    return Listing(live, recent)


def session(svc: Services, session_id: int) -> SessionRow:
    """One session's row, or NotFound."""
    with svc.reader.connect() as conn:
        row = store.get(conn, session_id)
    if row is None:
        raise NotFound("no such terminal session (recordings are deleted after terminal_retention_days)")
    return row


def cast(svc: Services, principal: Principal, ip: str, session_id: int) -> tuple[SessionRow, str]:
    """The session and its whole recording (asciicast v2 text); audited as terminal.replay."""
    row = session(svc, session_id)
    with svc.reader.connect() as conn:
        text = "".join(store.recording(conn, svc.box, session_id))
    with svc.engine.begin() as conn:
        accounts.write_audit(conn, principal.user, "terminal.replay", row.device_name, {"session": session_id}, ip)
    return row, text
