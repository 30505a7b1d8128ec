"""terminal_sessions and terminal_chunks: audited browser terminal sessions and their sealed asciicast recordings

Revision ID: 0013_terminal
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_terminal"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "terminal_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("device_name", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("cols", sa.Integer(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("bytes_in", sa.Integer(), nullable=False),
        sa.Column("bytes_out", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_sessions")),
    )
    op.create_index("ix_terminal_sessions_started_at", "terminal_sessions", ["started_at"])
    op.create_table(
        "terminal_chunks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["terminal_sessions.id"], name=op.f("fk_terminal_chunks_session_id_terminal_sessions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_terminal_chunks")),
    )
    op.create_index("ix_terminal_chunks_session", "terminal_chunks", ["session_id", "seq"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_terminal_chunks_session", table_name="terminal_chunks")
    op.drop_table("terminal_chunks")
    op.drop_index("ix_terminal_sessions_started_at", table_name="terminal_sessions")
    op.drop_table("terminal_sessions")
