"""Leases with fencing tokens: one holder at a time for a named role (scheduler, notification sender).

A lease is a row: holder, fence, expires_at (database clock). Taking it over from an expired
holder increments the fence; work done under the lease carries the fence, and `fenced()` inside
the writing transaction refuses a holder whose fence is no longer current. Every process uses
the database's clock, so hosts' clocks never decide who holds a lease.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from dataclasses import dataclass

from sqlalchemy import Connection, select, text, update

from server.store.db import insert_ignore
from server.store.schema import leases


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds a lease, with which fence, until when (database clock), and the database's now."""

    name: str
    holder: str | None
    fence: int
    expires_at: float
    now: float

    @property
    def live(self) -> bool:
        """Held and not expired."""
        return self.holder is not None and self.expires_at > self.now


def holder_name(role: str) -> str:
    """A name for this process in leases and logs: role, host, pid and a random part (pids are reused)."""
    return f"{role}@{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


def db_now(conn: Connection) -> float:
    """The database's clock in epoch seconds (the local clock on SQLite, which is local anyway)."""
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
    return time.time()


def _row(conn: Connection, name: str, lock: bool) -> Lease:
    insert_ignore(conn, leases, [{"name": name, "holder": None, "fence": 0, "expires_at": 0.0}])
    query = select(leases).where(leases.c.name == name)
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).one()
    return Lease(name, row.holder, int(row.fence), float(row.expires_at), db_now(conn))


def acquire(conn: Connection, name: str, holder: str, ttl: float) -> int | None:
    """Take or renew the lease; the fence while `holder` has it, None while somebody else does."""
    lease = _row(conn, name, lock=True)
    if lease.holder == holder and lease.live:
        conn.execute(update(leases).where(leases.c.name == name).values(expires_at=lease.now + ttl))
        return lease.fence
    if lease.live:
        return None
    fence = lease.fence + 1
    conn.execute(
        update(leases)
        .where(leases.c.name == name)
        .values(holder=holder, fence=fence, expires_at=lease.now + ttl, acquired_at=lease.now)
    )
    return fence


def release(conn: Connection, name: str, holder: str) -> None:
    """Give the lease up at once (a clean shutdown), so another process takes over without waiting."""
    conn.execute(update(leases).where(leases.c.name == name, leases.c.holder == holder).values(expires_at=0.0))


def fenced(conn: Connection, name: str, holder: str, fence: int) -> bool:
    """True if `holder` still holds the lease with `fence`; call it inside the transaction that does the work.

    On PostgreSQL the row is share-locked until that transaction ends, so a new holder cannot take
    over (FOR UPDATE in `acquire`) while work under the old fence is being committed.
    """
    query = select(leases.c.holder, leases.c.fence, leases.c.expires_at).where(leases.c.name == name)
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    row = conn.execute(query).first()
    return row is not None and row.holder == holder and int(row.fence) == fence and float(row.expires_at) > db_now(conn)


def current(conn: Connection, name: str) -> Lease | None:
    """The lease as it stands (for the workers page), or None if nobody ever took it."""
    row = conn.execute(select(leases).where(leases.c.name == name)).first()
    if row is None:
        return None
    return Lease(name, row.holder, int(row.fence), float(row.expires_at), db_now(conn))
