"""Terminal sessions and their recordings (asciicast v2 lines, sealed with the secret box in chunks)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, String

from server.store.columns import at, by, counter, id_table, ref

terminal_sessions = id_table(
    "terminal_sessions",
    Column("user_id", Integer, nullable=True),
    by("username", nullable=False),
    Column("device_id", Integer, nullable=True),
    Column("device_name", String(128), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("alert_id", Integer, nullable=True),
    Column("ip", String(64), nullable=True),
    at("started_at"),
    Column("ended_at", Float, nullable=True),
    Column("end_reason", String(32), nullable=True),
    Column("cols", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    counter("bytes_in"),
    counter("bytes_out"),
)
Index("ix_terminal_sessions_started_at", terminal_sessions.c.started_at)

terminal_chunks = id_table(
    "terminal_chunks",
    ref("session_id", "terminal_sessions"),
    Column("seq", Integer, nullable=False),
    # Sealed {"lines": "..."}: whole asciicast lines only, so a recording read at any moment is valid JSON lines.
    Column("data", LargeBinary, nullable=False),
)
Index("ix_terminal_chunks_session", terminal_chunks.c.session_id, terminal_chunks.c.seq, unique=True)
