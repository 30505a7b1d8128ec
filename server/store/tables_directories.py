"""The directories table: Active Directory / LDAP servers of directory accounts, from the file or the admin pages."""

from __future__ import annotations

from sqlalchemy import JSON, Column, LargeBinary, String

from server.store.columns import at, by, id_table, unique_name

directories = id_table(
    "directories",
    unique_name(),
    Column("source", String(8), nullable=False),  # file (directories.yaml, read-only in the pages) | admin
    Column("spec", JSON, nullable=False),  # every setting but the bind password
    Column("secret", LargeBinary),  # sealed {"bind_password": ...}; never returned by the API
    at("updated_at"),
    by("updated_by"),
)
