"""The directories table: Active Directory / LDAP servers of directory accounts, from the file or the admin pages."""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, LargeBinary, String, Table

from server.store.schema import metadata

directories = Table(
    "directories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("source", String(8), nullable=False),  # file (directories.yaml, read-only in the pages) | admin
    Column("spec", JSON, nullable=False),  # every setting but the bind password
    Column("secret", LargeBinary),  # sealed {"bind_password": ...}; never returned by the API
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(64)),
)
