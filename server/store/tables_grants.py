"""The user_grants table: named permissions (directory, terminal) an admin grants to an operator."""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Integer, String, Table

from server.store.schema import metadata

user_grants = Table(
    "user_grants",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("granted_at", Float, nullable=False),
    Column("granted_by", String(64)),  # the admin's name, for the users page (the audit log has the full story)
)
