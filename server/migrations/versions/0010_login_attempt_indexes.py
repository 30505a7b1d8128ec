"""login attempts indexed by account and by address: sign-in throttling and the owner's notice look them up per attempt

Revision ID: 0010_signin
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010_signin"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_login_attempts_username", ["username", "id"], unique=False)
        batch_op.create_index("ix_login_attempts_ip_ts", ["ip", "ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_ip_ts")
        batch_op.drop_index("ix_login_attempts_username")
