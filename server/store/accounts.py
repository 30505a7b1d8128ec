"""Users, sessions, API tokens, login attempts and the audit log."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from sqlalchemy import Connection, delete, func, insert, or_, select, update

from server.logsafe import escape
from server.store.jsontypes import JsonObject
from server.store.schema import api_tokens, audit, login_attempts, sessions, users

ROLES = ("viewer", "operator", "admin")
FAILED_LOGIN_KEEP = 90 * 86400.0  # wrong passwords and codes are forgotten after 90 days
SIGN_IN_KEEP = 400 * 86400.0  # completed sign-ins too (known addresses), but each account's newest stays
TOKEN_PREFIX = "pnt_"  # noqa: S105 - a prefix, not a secret
audit_log = logging.getLogger("pocketnoc.audit")


@dataclass(frozen=True, slots=True)
class User:
    """A signed-in principal."""

    id: int
    name: str
    role: str
    disabled: bool = False

    def can(self, role: str) -> bool:
        """True when this user's role is at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)


def digest(value: str) -> str:
    """SHA-256 hex of a bearer secret (sessions and tokens are stored only as digests)."""
    return hashlib.sha256(value.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(row.id, row.name, row.role, bool(row.disabled))


def get_user_by_name(conn: Connection, name: str) -> tuple[User, str] | None:
    """A user and their password hash."""
    row = conn.execute(select(users).where(users.c.name == name)).first()
    return (_user(row), row.password_hash) if row else None


def get_user(conn: Connection, user_id: int) -> User | None:
    """A user by id."""
    row = conn.execute(select(users).where(users.c.id == user_id)).first()
    return _user(row) if row else None


def list_users(conn: Connection) -> list[User]:
    """All users by name."""
    return [_user(r) for r in conn.execute(select(users).order_by(users.c.name))]


def insert_user(conn: Connection, name: str, password_hash: str, role: str) -> int:
    """Add a user (the caller validated name, role and password)."""
    now = time.time()
    result = conn.execute(
        insert(users).values(
            name=name, password_hash=password_hash, role=role, disabled=False, created_at=now, password_changed_at=now
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def set_password_hash(conn: Connection, user_id: int, password_hash: str) -> None:
    """Replace a password and end every session of that user."""
    conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash, password_changed_at=time.time()))
    conn.execute(delete(sessions).where(sessions.c.user_id == user_id))


def count_users(conn: Connection) -> int:
    """How many users exist."""
    return int(conn.execute(select(func.count()).select_from(users)).scalar() or 0)


def end_session(conn: Connection, session_id: str) -> None:
    """Log a session out."""
    conn.execute(delete(sessions).where(sessions.c.id == session_id))


def new_token(conn: Connection, user_id: int, name: str) -> str:
    """Create an API token; the plain value is returned once and stored only as a digest."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        insert(api_tokens).values(name=name, user_id=user_id, token_hash=digest(token), created_at=time.time(), revoked=False)
    )
    return token


@dataclass(frozen=True, slots=True)
class TokenOwner:
    """A valid bearer token: its own row id and the user it acts for (two different ids, never mixed)."""

    token_id: int
    user: User


def find_token(conn: Connection, token: str, touch: bool = True) -> TokenOwner | None:
    """The token and its owner, or None (revoked, unknown, or its user disabled); touch=False: read only (disk full)."""
    row = conn.execute(
        # Every column labelled: a bare users.* beside api_tokens.id made `row.id` the token's id.
        select(
            api_tokens.c.id.label("token_id"),
            api_tokens.c.last_used.label("last_used"),
            users.c.id.label("user_id"),
            users.c.name.label("user_name"),
            users.c.role.label("user_role"),
            users.c.disabled.label("user_disabled"),
        )
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.token_hash == digest(token), api_tokens.c.revoked.is_(False))
    ).first()
    if row is None or row.user_disabled:
        return None
    now = time.time()
    if touch and (row.last_used is None or now - row.last_used > 60):
        conn.execute(update(api_tokens).where(api_tokens.c.id == row.token_id).values(last_used=now))
    return TokenOwner(int(row.token_id), User(int(row.user_id), row.user_name, row.user_role, bool(row.user_disabled)))


def touch_tokens(conn: Connection, used: Mapping[str, float]) -> None:
    """Write token uses that were kept in memory while the disk was full."""
    for token_hash, ts in used.items():
        conn.execute(update(api_tokens).where(api_tokens.c.token_hash == token_hash,
                                              or_(api_tokens.c.last_used.is_(None), api_tokens.c.last_used < ts))
                     .values(last_used=ts))


def token_alive(conn: Connection, token_hash: str) -> bool:
    """Is the token with this digest still valid (not revoked, its user not disabled)?"""
    row = conn.execute(
        select(users.c.disabled)
        .join(api_tokens, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.token_hash == token_hash, api_tokens.c.revoked.is_(False))
    ).first()
    return row is not None and not row.disabled


def record_login(conn: Connection, username: str, ip: str, ok: bool, now: float | None = None) -> None:
    """Remember a sign-in attempt: a wrong password or code (ok=False) or a completed sign-in (ok=True)."""
    ts = time.time() if now is None else now
    conn.execute(insert(login_attempts).values(ts=ts, username=username[:64], ip=ip[:64], ok=ok))


def prune_login_attempts(conn: Connection, now: float | None = None) -> int:
    """Forget sign-in attempts past their keep time (each account's newest completed sign-in stays); returns rows gone."""
    now = time.time() if now is None else now
    la = login_attempts
    newest = select(func.max(la.c.id)).where(la.c.ok.is_(True)).group_by(la.c.username).scalar_subquery()
    failed = conn.execute(delete(la).where(la.c.ok.is_(False), la.c.ts < now - FAILED_LOGIN_KEEP))
    done = conn.execute(delete(la).where(la.c.ok.is_(True), la.c.ts < now - SIGN_IN_KEEP, la.c.id.not_in(newest)))
    return int(failed.rowcount or 0) + int(done.rowcount or 0)


@dataclass(frozen=True, slots=True)
class Tally:
    """Failed attempts of one kind in the window, and when the last one was."""

    count: int = 0
    last: float = 0.0


@dataclass(frozen=True, slots=True)
class FailureStats:
    """What sign-in throttling looks at for one attempt."""

    pair: Tally  # this account from this address
    account: Tally  # this account from every address
    address: Tally  # this address, every account
    known_address: bool  # this account has completed a sign-in from this address before


def _tally(conn: Connection, since: float, *where: Any) -> Tally:
    la = login_attempts
    row = conn.execute(
        select(func.count(), func.max(la.c.ts)).where(la.c.ts >= since, la.c.ok.is_(False), *where)
    ).first()
    return Tally(int(row[0] or 0), float(row[1] or 0.0)) if row else Tally()


def failure_stats(conn: Connection, username: str, ip: str, since: float) -> FailureStats:
    """Failed sign-ins since `since` for this account and address, and whether the address is one the account uses."""
    la, name, addr = login_attempts, username[:64], ip[:64]
    known = conn.execute(select(la.c.id).where(la.c.username == name, la.c.ip == addr, la.c.ok.is_(True)).limit(1)).first()
    return FailureStats(
        pair=_tally(conn, since, la.c.username == name, la.c.ip == addr),
        account=_tally(conn, since, la.c.username == name),
        address=_tally(conn, since, la.c.ip == addr),
        known_address=known is not None,
    )


@dataclass(frozen=True, slots=True)
class FailedSignIns:
    """Wrong passwords or codes for an account: before its latest completed sign-in (since the one before), and since."""

    before_last: int
    since_last: int
    last_at: float | None
    last_ip: str | None
    last_sign_in_at: float | None


def failed_sign_ins(conn: Connection, username: str) -> FailedSignIns:
    """What the account's owner is told when they sign in (row ids order the attempts, whatever the clocks say)."""
    la, name = login_attempts, username[:64]
    mine = la.c.username == name
    oks = list(conn.execute(select(la.c.id, la.c.ts).where(mine, la.c.ok.is_(True)).order_by(la.c.id.desc()).limit(2)))
    latest = oks[0].id if oks else None
    previous = oks[1].id if len(oks) > 1 else 0
    failed = select(func.count()).select_from(la).where(la.c.username == name, la.c.ok.is_(False))
    before = 0 if latest is None else conn.execute(failed.where(la.c.id > previous, la.c.id < latest)).scalar() or 0
    since = conn.execute(failed.where(la.c.id > (latest or 0))).scalar() or 0
    last = conn.execute(
        select(la.c.ts, la.c.ip).where(mine, la.c.ok.is_(False), la.c.id > previous).order_by(la.c.id.desc()).limit(1)
    ).first()
    return FailedSignIns(
        before_last=int(before),
        since_last=int(since),
        last_at=float(last.ts) if last else None,
        last_ip=str(last.ip) if last else None,
        last_sign_in_at=float(oks[0].ts) if oks else None,
    )


def write_audit(
    conn: Connection,
    user: User | None,
    action: str,
    target: str = "",
    detail: Mapping[str, object] | None = None,
    ip: str | None = None,
) -> None:
    """Append an audit entry (and one escaped line to the log: values cannot forge extra log lines)."""
    conn.execute(
        insert(audit).values(
            ts=time.time(),
            user_id=user.id if user else None,
            username=user.name if user else None,
            action=action,
            target=target[:256],
            detail=dict(detail or {}),
            ip=(ip or "")[:64],
        )
    )
    audit_log.info(
        "audit action=%s user=%s target=%s ip=%s",
        escape(action, 64),
        escape(user.name if user else "-", 64),
        escape(target, 256),
        escape(ip or "-", 64),
    )


class AuditEntry(TypedDict):
    """An audit row as the API shows it (the table's columns, in order)."""

    id: int
    ts: float
    user_id: int | None
    username: str | None
    action: str
    target: str | None
    detail: JsonObject
    ip: str | None


def read_audit(conn: Connection, limit: int = 100, before: int | None = None) -> list[AuditEntry]:
    """Newest audit entries first."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit.c.id < before)
    return [{"id": r.id, "ts": r.ts, "user_id": r.user_id, "username": r.username, "action": r.action, "target": r.target,
             "detail": r.detail, "ip": r.ip} for r in conn.execute(query)]
