"""user_grants: named permissions (directory, terminal) granted to operators

Revision ID: 0011_grants
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_grants"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_grants",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("granted_at", sa.Float(), nullable=False),
        sa.Column("granted_by", sa.String(length=64)),
        sa.PrimaryKeyConstraint("user_id", "name", name=op.f("pk_user_grants")),
    )


def downgrade() -> None:
    op.drop_table("user_grants")
