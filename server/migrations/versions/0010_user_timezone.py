"""user_prefs: each user's time zone for the times pages show (the API stays ISO UTC)

Revision ID: 0010tz
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010tz"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_prefs",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("tz_auto", sa.Boolean(), nullable=False),  # true: taken from the browser, not chosen
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("user_prefs")
