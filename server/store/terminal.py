"""Terminal sessions: the row of each session and its recording, kept as sealed chunks of asciicast lines."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, update

from server.keys.secretbox import SecretBox
from server.store.tables_terminal import terminal_chunks, terminal_sessions


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One terminal session as the audit shows it."""

    id: int
    user_id: int | None
    username: str
    device_id: int | None
    device_name: str
    reason: str
    alert_id: int | None
    ip: str | None
    started_at: float
    ended_at: float | None
    end_reason: str | None
    cols: int
    rows: int
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class NewSession:
    """What is known when a session opens."""

    user_id: int
    username: str
    device_id: int
    device_name: str
    reason: str
    alert_id: int | None
    ip: str
    started_at: float
    cols: int
    rows: int


def create(conn: Connection, s: NewSession) -> int:
    """Record a session that is opening; returns its id."""
    values = {
        "user_id": s.user_id, "username": s.username[:64], "device_id": s.device_id, "device_name": s.device_name[:128],
        "reason": s.reason[:500], "alert_id": s.alert_id, "ip": s.ip[:64], "started_at": s.started_at,
        "cols": s.cols, "rows": s.rows, "bytes_in": 0, "bytes_out": 0,
    }  # fmt: skip
    result = conn.execute(insert(terminal_sessions).values(values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def finish(conn: Connection, session_id: int, ended_at: float, reason: str, bytes_in: int, bytes_out: int) -> None:
    """Mark a session ended (once: a second call changes nothing)."""
    conn.execute(
        update(terminal_sessions)
        .where(terminal_sessions.c.id == session_id, terminal_sessions.c.ended_at.is_(None))
        .values(ended_at=ended_at, end_reason=reason[:32], bytes_in=bytes_in, bytes_out=bytes_out)
    )


def add_chunk(conn: Connection, box: SecretBox, session_id: int, seq: int, lines: str) -> None:
    """Append whole asciicast lines to a recording, sealed."""
    sealed = box.seal({"lines": lines})
    if sealed is not None:
        conn.execute(insert(terminal_chunks).values(session_id=session_id, seq=seq, data=sealed))


def recording(conn: Connection, box: SecretBox, session_id: int) -> Iterator[str]:
    """The recording's lines in order, unsealed chunk by chunk."""
    query = select(terminal_chunks.c.data).where(terminal_chunks.c.session_id == session_id).order_by(terminal_chunks.c.seq)
    for (data,) in conn.execute(query):
        yield str(box.open(bytes(data)).get("lines", ""))


def _row(r: object) -> SessionRow:
    return SessionRow(*(getattr(r, c.name) for c in terminal_sessions.columns))


def get(conn: Connection, session_id: int) -> SessionRow | None:
    """One session, or None."""
    r = conn.execute(select(terminal_sessions).where(terminal_sessions.c.id == session_id)).first()
    return _row(r) if r is not None else None


def recent(conn: Connection, limit: int = 50, device_id: int | None = None) -> list[SessionRow]:
    """The newest sessions first (all devices, or one)."""
    query = select(terminal_sessions).order_by(terminal_sessions.c.id.desc()).limit(limit)
    if device_id is not None:
        query = query.where(terminal_sessions.c.device_id == device_id)
    return [_row(r) for r in conn.execute(query)]


def unfinished(conn: Connection, started_before: float) -> list[int]:
    """Sessions recorded as open that started before `started_before`."""
    query = select(terminal_sessions.c.id).where(
        terminal_sessions.c.ended_at.is_(None), terminal_sessions.c.started_at < started_before
    )
    return [int(r[0]) for r in conn.execute(query)]


def prune(conn: Connection, before: float) -> int:
    """Delete sessions (and recordings) that ended before `before`; returns how many."""
    old = select(terminal_sessions.c.id).where(terminal_sessions.c.ended_at.is_not(None), terminal_sessions.c.ended_at < before)
    ids = [int(r[0]) for r in conn.execute(old)]
    if ids:
        conn.execute(delete(terminal_chunks).where(terminal_chunks.c.session_id.in_(ids)))
        conn.execute(delete(terminal_sessions).where(terminal_sessions.c.id.in_(ids)))
    return len(ids)


def chunk_count(conn: Connection, session_id: int) -> int:
    """How many sealed chunks a recording has."""
    query = select(func.count()).select_from(terminal_chunks).where(terminal_chunks.c.session_id == session_id)
    return int(conn.execute(query).scalar() or 0)
