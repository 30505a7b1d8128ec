"""Engine creation (SQLite WAL pragmas, PostgreSQL pool) and schema migration through Alembic."""

from __future__ import annotations

import functools
import json
import math
import re
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event, insert, make_url, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError

if TYPE_CHECKING:  # Alembic (~0.3 s to import) loads when a schema is migrated, not with every engine
    from alembic.config import Config

# Rooms above the store name connections, engines and database errors by these, never by importing SQLAlchemy.
__all__ = [
    "Connection", "DBAPIError", "DataError", "Engine", "IntegrityError", "OperationalError",
    "conninfo", "make_engine", "migrate", "ping",
]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
MIGRATE_LOCK = 0x706E6D67  # pg_advisory_lock key held while migrating ("pnmg")


def json_text(value: object) -> str:
    """A JSON column's text: orjson (4-5x quicker than json: the writer encodes every device's latest metrics every
    poll); json for what orjson refuses (keys that are not strings, integers beyond 64 bits). NaN and infinities
    become null either way (PostgreSQL's json refuses them)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(_finite(value))


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_value(text_or_bytes: str | bytes) -> object:
    """A JSON column's value: orjson, json for what orjson refuses (NaN or Infinity written by an older release)."""
    try:
        return orjson.loads(text_or_bytes)
    except orjson.JSONDecodeError:
        return json.loads(text_or_bytes)


def make_engine(url: str, immediate: bool = True, pool_size: int = 10) -> Engine:
    """An engine tuned for its dialect: WAL and busy timeout on SQLite, a bounded pool on PostgreSQL.

    On SQLite, `immediate` engines take the write lock at BEGIN (for writers); the others read
    without locking anybody out (WAL).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               json_serializer=json_text, json_deserializer=json_value)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _begin)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front: no SQLITE_BUSY on read-then-write.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True,
                         json_serializer=json_text, json_deserializer=json_value)


def insert_ignore(conn: Connection, table: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows, skipping ones whose key exists (both dialects)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(postgresql.insert(table).on_conflict_do_nothing(), list(rows))
    elif conn.dialect.name == "sqlite":
        conn.execute(sqlite.insert(table).on_conflict_do_nothing(), list(rows))
    else:
        conn.execute(insert(table).prefix_with("IGNORE"), list(rows))


# pg_advisory_xact_lock keys of the start-up syncs from config files: serve processes starting together on one
# PostgreSQL database sync one after the other (the later finds what the first made) instead of both inserting the
# same names, a unique violation that ended one start-up.
SYNC_DEVICES = 0x706E6476  # "pndv"
SYNC_CHANNELS = 0x706E6368  # "pnch"
SYNC_DIRECTORIES = 0x706E6472  # "pndr"


def serialise_sync(conn: Connection, key: int) -> None:
    """Take a sync's lock for this transaction (SQLite's BEGIN IMMEDIATE already serialises writers)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def insert_returning(
    conn: Connection, table: Any, rows: Sequence[dict[str, Any]], columns: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """Insert rows, skipping ones whose key exists, and return `columns` of the rows this insert added (a skipped
    row is not among them). Elsewhere than SQLite and PostgreSQL: nothing returned, the caller reads them."""
    if not rows:
        return []
    name = conn.dialect.name
    if name not in ("postgresql", "sqlite"):
        insert_ignore(conn, table, rows)
        return []
    stmt = (postgresql if name == "postgresql" else sqlite).insert(table).on_conflict_do_nothing().returning(*columns)
    return [tuple(r) for r in conn.execute(stmt, list(rows))]


def alembic_config(url: str) -> Config:
    """Alembic config pointing at our migrations and the given database."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


_REVISION = re.compile(r"""^revision(?:\s*:[^=]*)?\s*=\s*["']([^"']+)["']\s*$""", re.M)
_POINTERS = re.compile(r"""^(down_revision|depends_on)(?:\s*:[^=]*)?\s*=\s*(.*)$""", re.M)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


@functools.cache
def newest_revisions() -> frozenset[str] | None:
    """What alembic_version holds once every migration ran: each revision no other one names as its down_revision or
    depends_on. Read from the version files' text (importing Alembic and the migrations costs a CLI command ~0.3 s);
    None when a file does not read plainly (then `migrate` asks Alembic)."""
    revisions: set[str] = set()
    named: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.findall(source)
        pointers = dict(_POINTERS.findall(source))
        if len(found) != 1 or set(pointers) != {"down_revision", "depends_on"}:
            return None
        for value in pointers.values():
            if value.strip() != "None" and not _QUOTED.findall(value):
                return None  # a tuple over several lines, a name...: not plain
            named.update(_QUOTED.findall(value))
        revisions.add(found[0])
    return frozenset(revisions - named) or None


def _at_newest(engine: Engine) -> bool:
    """Whether the database's schema is already at the newest revision (then migrating would change nothing)."""
    newest = newest_revisions()
    if newest is None:
        return False
    with engine.connect() as conn:
        try:
            stamped = frozenset(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
        except DBAPIError:  # a new database: no schema yet
            return False
        finally:
            conn.rollback()
    return stamped == newest


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (a database already there is only read, Alembic is not loaded)."""
    if _at_newest(engine):
        return
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        locked = conn.dialect.name == "postgresql"
        if locked:  # serve and workers may start together on one PostgreSQL: one migrates, the others wait
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATE_LOCK})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "heads")  # feature branches of the schema may each have a head
        finally:
            if locked:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATE_LOCK})
                conn.commit()


def conninfo(url: str, application_name: str | None = None) -> str:
    """A libpq URL (what Procrastinate's psycopg pool takes) from a SQLAlchemy URL.

    A worker's carries its application_name: the leader sees in pg_stat_activity whether it still lives.
    """
    parsed = make_url(url).set(drivername="postgresql")
    if application_name:
        parsed = parsed.update_query_dict({"application_name": application_name})
    return parsed.render_as_string(hide_password=False)


def ping(conn: Connection) -> None:
    """A round trip to the database (raises when it does not answer)."""
    conn.execute(text("SELECT 1"))
