"""Server-side sessions: full sessions and short-lived half-sessions (second factor due, or enrolment due)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import Connection, delete, insert, select, update

from server.store.accounts import User, digest
from server.store.schema import sessions, users

FULL = "full"
SECOND_FACTOR = "2fa"
ENROL = "enrol"
# A half-session lives this long: enough to find the phone, too short to be worth stealing.
HALF_SESSION_TTL = {SECOND_FACTOR: 300.0, ENROL: 900.0}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session: who, which stage, and when the holder last proved who they are."""

    id: str
    user: User
    csrf: str
    stage: str
    created_at: float
    verified_at: float | None
    failures: int


def public_id(session_id: str) -> str:
    """A handle safe to show and to send back (never the stored id itself)."""
    return hashlib.sha256(b"pocketnoc-session:" + session_id.encode()).hexdigest()[:20]


def create(
    conn: Connection,
    user_id: int,
    ip: str | None,
    agent: str | None,
    stage: str = FULL,
    verified_at: float | None = None,
) -> tuple[str, str]:
    """A new session with a fresh random id: returns (cookie value, CSRF token)."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    now = time.time()
    conn.execute(
        insert(sessions).values(
            id=digest(token),
            user_id=user_id,
            csrf=csrf,
            created_at=now,
            last_seen=now,
            ip=(ip or "")[:64],
            user_agent=(agent or "")[:256],
            stage=stage,
            verified_at=verified_at,
            failures=0,
        )
    )
    return token, csrf


def _expired(row: Any, now: float, idle: float, absolute: float, last_seen: float | None = None) -> bool:
    seen = row.last_seen if last_seen is None else last_seen
    if row.disabled or now - seen > idle or now - row.created_at > absolute:
        return True
    ttl = HALF_SESSION_TTL.get(row.stage)
    return ttl is not None and now - row.created_at > ttl


def _query(session_id: str) -> Any:
    return (
        select(sessions, users.c.name, users.c.role, users.c.disabled)
        .join(users, users.c.id == sessions.c.user_id)
        .where(sessions.c.id == session_id)
    )


def load(conn: Connection, token: str, idle: float, absolute: float, touch: bool = True,
         seen: Mapping[str, float] | None = None) -> SessionInfo | None:
    """The live session for a cookie value, or None; expired sessions are removed on sight.

    touch=False reads only (the disk is full): nothing is removed or touched, and `seen` holds the touches kept in memory.
    """
    sid = digest(token)
    row = conn.execute(_query(sid)).first()
    if row is None:
        return None
    now = time.time()
    last_seen = max(float(row.last_seen), (seen or {}).get(sid, 0.0))
    if _expired(row, now, idle, absolute, last_seen):
        if touch:
            conn.execute(delete(sessions).where(sessions.c.id == sid))
        return None
    if touch and now - row.last_seen > 60:
        conn.execute(update(sessions).where(sessions.c.id == sid).values(last_seen=now))
    return SessionInfo(
        id=sid,
        user=User(row.user_id, row.name, row.role, bool(row.disabled)),
        csrf=row.csrf,
        stage=row.stage,
        created_at=row.created_at,
        verified_at=row.verified_at,
        failures=int(row.failures or 0),
    )


def touch_many(conn: Connection, seen: Mapping[str, float]) -> None:
    """Write touches that were kept in memory while the disk was full (never moving last_seen back)."""
    for sid, ts in seen.items():
        conn.execute(update(sessions).where(sessions.c.id == sid, sessions.c.last_seen < ts).values(last_seen=ts))


def alive(conn: Connection, session_id: str, idle: float, absolute: float, seen: Mapping[str, float] | None = None) -> bool:
    """True while the session (by stored id) exists, is a full session and has not timed out; `seen` holds the
    touches kept in memory while the disk is full (a user active then is not timed out)."""
    row = conn.execute(_query(session_id)).first()
    if row is None or row.stage != FULL:
        return False
    last_seen = max(float(row.last_seen), (seen or {}).get(session_id, 0.0))
    return not _expired(row, time.time(), idle, absolute, last_seen)


def end(conn: Connection, session_id: str) -> None:
    """End one session."""
    conn.execute(delete(sessions).where(sessions.c.id == session_id))


def end_for_user(conn: Connection, user_id: int, keep: str | None = None) -> int:
    """End every session of a user (on every device), except `keep`; returns how many ended."""
    query = delete(sessions).where(sessions.c.user_id == user_id)
    if keep is not None:
        query = query.where(sessions.c.id != keep)
    return int(conn.execute(query).rowcount or 0)


def end_by_public_id(conn: Connection, user_id: int, handle: str) -> bool:
    """End one of this user's sessions by its public handle; another user's handle matches nothing."""
    for (sid,) in conn.execute(select(sessions.c.id).where(sessions.c.user_id == user_id)):
        if secrets.compare_digest(public_id(sid), handle):
            end(conn, sid)
            return True
    return False


class SessionView(TypedDict):
    """A full session as its owner sees it: a public handle, never the session id."""

    id: str
    created_at: float
    last_seen: float
    ip: str
    user_agent: str
    current: bool


def list_for_user(conn: Connection, user_id: int, current: str | None = None) -> list[SessionView]:
    """A user's full sessions, newest activity first, with public handles."""
    rows = conn.execute(
        select(sessions).where(sessions.c.user_id == user_id, sessions.c.stage == FULL).order_by(sessions.c.last_seen.desc())
    )
    return [
        {
            "id": public_id(r.id),
            "created_at": r.created_at,
            "last_seen": r.last_seen,
            "ip": r.ip or "",
            "user_agent": r.user_agent or "",
            "current": r.id == current,
        }
        for r in rows
    ]


def mark_verified(conn: Connection, session_id: str, when: float | None = None) -> None:
    """Remember that the holder just proved who they are (for step-up); earlier wrong proofs stop counting."""
    conn.execute(update(sessions).where(sessions.c.id == session_id).values(verified_at=when or time.time(), failures=0))


def add_failure(conn: Connection, session_id: str) -> int:
    """Count a wrong code on a half-session, or a wrong step-up proof on a full one; returns the new count."""
    conn.execute(update(sessions).where(sessions.c.id == session_id).values(failures=sessions.c.failures + 1))
    return int(conn.execute(select(sessions.c.failures).where(sessions.c.id == session_id)).scalar() or 0)
