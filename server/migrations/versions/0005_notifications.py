"""notifications: outbox, channels, push subscriptions, messages, deliveries, escalation tracks, action tokens

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("done_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_notify_outbox_alert_id_alerts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_outbox")),
    )
    op.create_index("ix_notify_outbox_pending", "notify_outbox", ["done_at", "id"], unique=False)
    op.create_table(
        "notify_channels",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("display", sa.String(length=300), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("allow_unsafe", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("broken_since", sa.Float(), nullable=True),
        sa.Column("last_ok", sa.Float(), nullable=True),
        sa.Column("last_attempt", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_notify_channels_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_channels")),
        sa.UniqueConstraint("name", name=op.f("uq_notify_channels_name")),
    )
    op.create_table(
        "push_subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("endpoint_hash", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("service", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_ok", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_push_subscriptions_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_subscriptions")),
        sa.UniqueConstraint("endpoint_hash", name=op.f("uq_push_subscriptions_endpoint_hash")),
    )
    op.create_index("ix_push_subscriptions_user", "push_subscriptions", ["user_id"], unique=False)
    op.create_table(
        "notify_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.Column("locked_until", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("episode", sa.Integer(), nullable=True),
        sa.Column("dedup_key", sa.String(length=96), nullable=False),
        sa.Column("target_type", sa.String(length=8), nullable=False),
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("summary_id", sa.Integer(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("last_status", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_notify_messages_alert_id_alerts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_messages")),
    )
    op.create_index("ix_notify_messages_due", "notify_messages", ["status", "next_at"], unique=False)
    op.create_index("ix_notify_messages_target", "notify_messages", ["target_type", "target_id", "alert_id", "id"], unique=False)
    op.create_index("ix_notify_messages_user", "notify_messages", ["user_id", "id"], unique=False)
    op.create_index("ix_notify_messages_summary", "notify_messages", ["summary_id"], unique=False)
    op.create_table(
        "notify_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("result", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("ms", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["notify_messages.id"], name=op.f("fk_notify_deliveries_message_id_notify_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_deliveries")),
    )
    op.create_index("ix_notify_deliveries_message", "notify_deliveries", ["message_id"], unique=False)
    op.create_table(
        "notify_tracks",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("episode", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("notified", sa.Boolean(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_notify_tracks_alert_id_alerts"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_notify_tracks")),
    )
    op.create_index("ix_notify_tracks_due", "notify_tracks", ["status", "next_at"], unique=False)
    op.create_table(
        "notify_tokens",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("used_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], name=op.f("fk_notify_tokens_alert_id_alerts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_notify_tokens_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_tokens")),
    )
    op.create_index("ix_notify_tokens_message", "notify_tokens", ["message_id"], unique=False)


def downgrade() -> None:
    for index, table in (
        ("ix_notify_tokens_message", "notify_tokens"),
        ("ix_notify_tracks_due", "notify_tracks"),
        ("ix_notify_deliveries_message", "notify_deliveries"),
        ("ix_notify_messages_summary", "notify_messages"),
        ("ix_notify_messages_user", "notify_messages"),
        ("ix_notify_messages_target", "notify_messages"),
        ("ix_notify_messages_due", "notify_messages"),
        ("ix_push_subscriptions_user", "push_subscriptions"),
        ("ix_notify_outbox_pending", "notify_outbox"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("notify_tokens", "notify_tracks", "notify_deliveries", "notify_messages", "push_subscriptions",
                  "notify_channels", "notify_outbox"):
        op.drop_table(table)
