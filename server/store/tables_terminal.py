"""Terminal sessions and their recordings (asciicast v2 lines, sealed with the secret box in chunks)."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Table

from server.store.schema import metadata

terminal_sessions = Table(
    "terminal_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, nullable=True),
    Column("username", String(64), nullable=False),
    Column("device_id", Integer, nullable=True),
    Column("device_name", String(128), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("alert_id", Integer, nullable=True),
    Column("ip", String(64), nullable=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Column("cols", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("bytes_in", Integer, nullable=False, default=0),
    Column("bytes_out", Integer, nullable=False, default=0),
)
Index("ix_terminal_sessions_started_at", terminal_sessions.c.started_at)

terminal_chunks = Table(
    "terminal_chunks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("session_id", Integer, ForeignKey("terminal_sessions.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    # Sealed {"lines": "..."}: whole asciicast lines only, so a recording read at any moment is valid JSON lines.
    Column("data", LargeBinary, nullable=False),
)
Index("ix_terminal_chunks_session", terminal_chunks.c.session_id, terminal_chunks.c.seq, unique=True)
