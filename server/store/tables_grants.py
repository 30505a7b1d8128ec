"""The user_grants table: named permissions (directory, terminal) an admin grants to an operator."""

from __future__ import annotations

from sqlalchemy import Column, String, Table

from server.store.columns import at, by, ref
from server.store.schema import metadata

user_grants = Table(
    "user_grants",
    metadata,
    ref("user_id", "users", primary_key=True),
    Column("name", String(32), primary_key=True),
    at("granted_at"),
    by("granted_by"),  # the admin's name, for the users page (the audit log has the full story)
)
