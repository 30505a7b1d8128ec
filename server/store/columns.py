"""Builders of what many tables declare alike: a table keyed by `id`, references, times, names, flags, counters, JSON.

Each call makes a new Column (a Column belongs to one table); the DDL is that of the Column written out in full.
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, ForeignKey, Integer, String, Table
from sqlalchemy.schema import SchemaItem

from server.store.jsontypes import JsonValue
from server.store.metadata import metadata

NAME = String(64)  # names of users, devices, rules, workers...: one length everywhere


def id_table(name: str, *items: SchemaItem) -> Table:
    """A table on the one `metadata` whose rows are known by an integer primary key `id`, its first column."""
    return Table(name, metadata, Column("id", Integer, primary_key=True), *items)


def ref(name: str, table: str, ondelete: str = "CASCADE", nullable: bool = False, primary_key: bool = False) -> Column[int]:
    """A reference to the `id` of a row of `table` (CASCADE: goes with it; SET NULL: outlives it)."""
    return Column(name, Integer, ForeignKey(f"{table}.id", ondelete=ondelete), nullable=nullable, primary_key=primary_key)


def at(name: str, nullable: bool = False) -> Column[float]:
    """A moment, in seconds since the epoch."""
    return Column(name, Float, nullable=nullable)


def unique_name() -> Column[str]:
    """The `name` that identifies a row to people (and in the config file)."""
    return Column("name", NAME, nullable=False, unique=True)


def by(name: str, nullable: bool = True) -> Column[str]:
    """A person's (or worker's) name, copied: it stays readable after the account is gone."""
    return Column(name, NAME, nullable=nullable)


def flag(name: str, default: bool = False) -> Column[bool]:
    """A yes/no that is never NULL."""
    return Column(name, Boolean, nullable=False, default=default)


def counter(name: str) -> Column[int]:
    """A count that starts at 0."""
    return Column(name, Integer, nullable=False, default=0)


def json_list(name: str) -> Column[list[JsonValue]]:
    """A JSON array, empty when not given."""
    return Column(name, JSON, nullable=False, default=list)


def json_dict(name: str) -> Column[dict[str, JsonValue]]:
    """A JSON object, empty when not given."""
    return Column(name, JSON, nullable=False, default=dict)
