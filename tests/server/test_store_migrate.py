"""Migrating: a database already at the newest schema is only read (no Alembic); one behind is brought up to it;
the tables the migrations make are the tables the store declares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.store.db import alembic_config, make_engine, migrate, newest_revisions
from server.store.schema import metadata
from tests import sql

pytestmark = pytest.mark.real_migrations  # Alembic itself, on new databases too (tests/conftest.py)


def _stamped(url: str) -> frozenset[str]:
    engine = make_engine(url)
    try:
        return frozenset(sql.scalars(engine, "SELECT version_num FROM alembic_version"))
    finally:
        engine.dispose()


def test_the_newest_revisions_read_from_the_files_are_what_alembic_stamps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = make_engine(url)
    try:
        migrate(engine)  # a new database: Alembic runs every migration
    finally:
        engine.dispose()
    newest = newest_revisions()
    assert newest is not None and len(newest) > 1  # the schema's feature branches each have a head
    assert _stamped(url) == newest


def test_a_database_behind_the_newest_schema_is_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            cfg = alembic_config(url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")  # an old release's schema
            conn.commit()
        assert _stamped(url) == {"0003"}
        migrate(engine)
        assert _stamped(url) == newest_revisions()
        assert sql.scalar(engine, "SELECT count(*) FROM terminal_sessions") == 0  # a table of a later migration exists now
    finally:
        engine.dispose()


def test_a_database_at_the_newest_schema_needs_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    code = (
        "import sys\n"
        "from server.store.db import make_engine, migrate\n"
        f"engine = make_engine({url!r})\n"
        "migrate(engine)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def _declared(name: str | None, type_: str, _parents: object) -> bool:
    """Not the queue's own tables (Procrastinate makes them) nor the samples partitions (made as time goes by)."""
    return type_ != "table" or not (name or "").startswith(("procrastinate_", "samples_"))


def test_the_migrated_schema_is_the_declared_one(db_url: str) -> None:
    """Alembic's autogenerate finds nothing to do: columns, types, keys and indexes match on both databases."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "include_name": _declared})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
