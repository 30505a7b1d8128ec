"""The tests' own look into the database: plain SQL run by the driver (sqlite3 or psycopg), never SQLAlchemy.

Tests check what pocketnoc stored, and set up what time or a crash would leave behind (a session eight days old, a
message still 'sending' when the process died), in SQL a reader can hold against the schema. Only the connection
comes from the store (`server.store.db.Engine` or a `Connection` a test already holds, so a look can share a store
call's transaction); the SQL is the test's and the driver runs it. So the house's rule holds for the tests as well:
only `server/store/` speaks SQLAlchemy (`lint-imports` checks `tests` and `bench` too).

Parameters are written `:name` whatever the database (`:dead`, not `::int`, is a parameter; write no `:word` inside
an SQL string literal or comment: it would be taken for one); lists go to PostgreSQL as arrays (`= ANY(:ids)`).
The helpers' own arguments are positional, so a parameter may be called `db` or `table` (not `order`, the
keyword of `records`, nor `returning`, that of `insert`). What comes back is each driver's own: on SQLite a boolean
is 0 or 1 and JSON is text, on PostgreSQL they are bool and decoded values; `records` decodes them as the store
reads them, `json_of` reads JSON from either.
"""

from __future__ import annotations

import collections
import functools
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from server.store.db import Connection, Engine, json_text
from server.store.schema import metadata

Db = Engine | Connection

_NAME = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


def driver_sql(sql: str, params: dict[str, Any], paramstyle: str) -> tuple[str, Sequence[Any] | dict[str, Any]]:
    """`sql` with its `:name` parameters in the driver's style ('qmark' for sqlite3, 'pyformat' for psycopg)."""
    missing = sorted(set(_NAME.findall(sql)) - set(params))
    if missing:
        raise KeyError(f"no value for :{', :'.join(missing)} in {sql!r}")
    if paramstyle == "qmark":
        order: list[Any] = []

        def qmark(match: re.Match[str]) -> str:
            order.append(params[match.group(1)])
            return "?"

        return _NAME.sub(qmark, sql), tuple(order)
    if paramstyle in ("pyformat", "format"):
        return _NAME.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%")), params
    raise ValueError(f"unsupported paramstyle {paramstyle!r}")


@contextmanager
def _connection(db: Db) -> Iterator[Connection]:
    if isinstance(db, Connection):
        yield db
    else:
        with db.begin() as conn:
            yield conn


def _execute(conn: Connection, sql: str, params: dict[str, Any]) -> Any:
    statement, values = driver_sql(sql, params, conn.dialect.paramstyle)
    return conn.exec_driver_sql(statement, values)  # type: ignore[arg-type]  # a tuple for qmark, a dict for pyformat


def rows(db: Db, sql: str, /, **params: Any) -> list[Any]:
    """Every row of a query; a row's columns are attributes (`r.name`) and positions (`r[0]`)."""
    with _connection(db) as conn:
        return list(_execute(conn, sql, params))


def one(db: Db, sql: str, /, **params: Any) -> Any:
    """The one row of a query (an error when there is none or more)."""
    with _connection(db) as conn:
        return _execute(conn, sql, params).one()


def scalar(db: Db, sql: str, /, **params: Any) -> Any:
    """The first column of the first row, or None when there is no row."""
    with _connection(db) as conn:
        return _execute(conn, sql, params).scalar()


def scalars(db: Db, sql: str, /, **params: Any) -> list[Any]:
    """The first column of every row."""
    with _connection(db) as conn:
        return list(_execute(conn, sql, params).scalars())


def run(db: Db, sql: str, /, **params: Any) -> int:
    """Run a statement that changes rows (committed at once when given an Engine); how many rows it changed."""
    with _connection(db) as conn:
        return int(_execute(conn, sql, params).rowcount)


def insert(db: Db, table: str, /, returning: str | None = None, **values: Any) -> Any:
    """Insert one row; with `returning`, that column of the new row (e.g. its id).

    Dicts and lists go in as JSON text, encoded as the store encodes it (NaN and infinities become null). Columns not
    given get the schema's own default (`server.store.schema`), as a store insert would.
    """
    names = [table, *values, *([returning] if returning else [])]
    bad = [n for n in names if not _IDENTIFIER.fullmatch(n)]
    if bad:
        raise ValueError(f"not a plain SQL name: {bad}")
    values = {**_defaults(table, set(values)), **values}
    values = {k: json_text(v) if isinstance(v, dict | list) else v for k, v in values.items()}  # as the store encodes JSON
    columns = ", ".join(values)
    placeholders = ", ".join(f":{name}" for name in values)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608 - names checked above, values bound
    if returning:
        return scalar(db, f"{sql} RETURNING {returning}", **values)
    return run(db, sql, **values)


def _defaults(table: str, given: set[str]) -> dict[str, Any]:
    """The schema's Python-side defaults of the columns not given (a callable default is called, as on insert)."""
    found = metadata.tables.get(table)
    if found is None:
        raise KeyError(f"no table {table!r} in server.store.schema")
    out: dict[str, Any] = {}
    for column in found.columns:
        default = column.default
        if column.name in given or default is None or not hasattr(default, "arg"):
            continue
        out[column.name] = default.arg(None) if callable(default.arg) else default.arg
    return out


def update(db: Db, table: str, where: str, values: dict[str, Any], /, **params: Any) -> int:
    """Set columns of the rows `where` picks (SQL with `:name` parameters); dicts and lists go in as
    JSON text, encoded as the store encodes it.

    `update(engine, "sessions", "user_id = :u", {"created_at": 0.0}, u=7)`; how many rows changed.
    """
    bad = [n for n in (table, *values) if not _IDENTIFIER.fullmatch(n)]
    if bad:
        raise ValueError(f"not a plain SQL name: {bad}")
    assignments = ", ".join(f"{name} = :set_{name}" for name in values)
    bound = {f"set_{k}": json_text(v) if isinstance(v, dict | list) else v for k, v in values.items()}
    return run(db, f"UPDATE {table} SET {assignments} WHERE {where}", **bound, **params)  # noqa: S608 - names checked


def _kind(column: Any) -> type | None:
    """bool for a flag, dict for JSON (an object or an array), None for what the driver hands back as it is."""
    name = str(getattr(column.type, "__visit_name__", "")).lower()
    return bool if name == "boolean" else dict if name in ("json", "jsonb") else None


@functools.cache
def _record_type(table: str) -> tuple[Any, tuple[tuple[str, type | None], ...]]:
    found = metadata.tables.get(table)
    if found is None:
        raise KeyError(f"no table {table!r} in server.store.schema")
    columns = tuple((c.name, _kind(c)) for c in found.columns)
    return collections.namedtuple(f"{table}_row", [name for name, _ in columns]), columns  # type: ignore[misc]


def records(db: Db, table: str, where: str = "", /, order: str = "id", **params: Any) -> list[Any]:
    """Whole rows of one table as the store reads them: JSON columns decoded, flags as bool (on SQLite too).

    `where` is SQL with `:name` parameters (`records(engine, "notify_messages", "status = :s", s="sent")`).
    """
    row_type, columns = _record_type(table)
    for name in (table, *(order.replace(" DESC", "").split(", ") if order else ())):
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(f"not a plain SQL name: {name!r}")
    names = ", ".join(name for name, _ in columns)
    query = f"SELECT {names} FROM {table}" + (f" WHERE {where}" if where else "") + (f" ORDER BY {order}" if order else "")  # noqa: S608 - names checked, values bound
    out = []
    with _connection(db) as conn:
        found = list(_execute(conn, query, params))
        text_json = conn.dialect.name == "sqlite"  # psycopg decodes JSON itself (a bare JSON string stays a string)
    for row in found:
        values = []
        for (_, kind), value in zip(columns, row, strict=True):
            if value is not None and kind is bool:
                value = bool(value)
            elif value is not None and kind is dict and text_json:
                value = json.loads(value)
            values.append(value)
        out.append(row_type(*values))
    return out


def json_of(value: Any) -> Any:
    """A JSON column's value read with `rows`/`scalar` as Python: SQLite hands back text, psycopg has decoded it
    already. (A JSON column holding a bare string is ambiguous here: read it with `records`.)"""
    return json.loads(value) if isinstance(value, str | bytes) else value


def url_via(url: str, host: str, port: int) -> str:
    """The database URL with another host and port (a proxy's in front of PostgreSQL), its user, password and query kept."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return parts._replace(netloc=f"{user}@{address}" if user else address).geturl()
