"""`pocketnoc migrate-data`: copy a whole install (SQLite) into another database (PostgreSQL), in one transaction.

Both schemas are first brought to the newest revision; then every table is copied in foreign-key
order, row for row with the same ids, sequences are moved past the copied ids, and the row counts
are compared. The target must be empty (a fresh `pocketnoc migrate`); a failure leaves it empty.
Secrets stay encrypted: the new install must use the same secret key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, Connection, Engine, MetaData, String, Table, Text, func, insert, select, text, update
from sqlalchemy.engine import make_url

from server.store.db import make_engine, migrate

BATCH = 5000
SKIPPED = {"alembic_version", "leases", "workers", "check_runs", "check_handoff"}  # schema and live scale-out state
MERGED = {"meta"}  # rows a fresh target already has (the key canary): the source's win


class MigrateError(Exception):
    """The copy cannot (or did not) happen; the message says why."""


def source_url(value: str) -> str:
    """A database URL from a URL or a path to a SQLite file."""
    if "://" in value:
        return value
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise MigrateError(f"no database file at {path}")
    return f"sqlite:///{path}"


def _same(a: str, b: str) -> bool:
    return make_url(a).render_as_string(hide_password=False) == make_url(b).render_as_string(hide_password=False)


def _tables(engine: Engine) -> MetaData:
    meta = MetaData()
    meta.reflect(engine)
    return meta


def _converter(table: Table) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Fix what SQLite may hold and PostgreSQL refuses: JSON kept as text, 0/1 booleans, NUL characters."""
    json_cols = {c.name for c in table.columns if isinstance(c.type, JSON)}
    bool_cols = {c.name for c in table.columns if isinstance(c.type, Boolean)}
    text_cols = {c.name for c in table.columns if isinstance(c.type, String | Text)}

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        for name in json_cols:
            value = row.get(name)
            if isinstance(value, str):
                try:
                    row[name] = json.loads(value)
                except ValueError:
                    pass
        for name in bool_cols:
            if isinstance(row.get(name), int):
                row[name] = bool(row[name])
        for name in text_cols:
            value = row.get(name)
            if isinstance(value, str) and "\x00" in value:
                row[name] = value.replace("\x00", "")
        return row

    return convert


def _rows(conn: Connection, table: Table) -> Iterator[list[dict[str, Any]]]:
    order = list(table.primary_key.columns) or list(table.columns)[:1]
    result = conn.execution_options(yield_per=BATCH).execute(select(table).order_by(*order))
    for part in result.partitions(BATCH):
        yield [dict(r._mapping) for r in part]


def _self_refs(table: Table) -> set[str]:
    """Columns pointing into their own table (devices.parent_id): filled in after all rows exist."""
    return {fk.parent.name for fk in table.foreign_keys if fk.column.table.name == table.name}


def _copy_table(src: Connection, dst: Connection, s_table: Table, d_table: Table) -> int:
    common = [c.name for c in s_table.columns if c.name in d_table.columns]
    convert = _converter(d_table)
    later = _self_refs(d_table)
    pk = [c.name for c in d_table.primary_key.columns]
    deferred: list[dict[str, Any]] = []
    merged = d_table.name in MERGED
    existing = {tuple(r) for r in dst.execute(select(*[d_table.c[k] for k in pk]))} if merged else set()
    count = 0
    for batch in _rows(src, s_table):
        rows = [convert({k: r[k] for k in common}) for r in batch]
        for row in rows:
            if later and pk:
                refs = {k: row[k] for k in later if row.get(k) is not None}
                if refs:
                    deferred.append({**{f"k_{k}": row[k] for k in pk}, **refs})
                    row.update(dict.fromkeys(refs))
        if merged:
            for row in [r for r in rows if tuple(r[k] for k in pk) in existing]:
                dst.execute(update(d_table).where(*[d_table.c[k] == row[k] for k in pk]).values(**row))
            rows = [r for r in rows if tuple(r[k] for k in pk) not in existing]
        if rows:
            dst.execute(insert(d_table), rows)
        count += len(batch)
    for ref in deferred:
        values = {k: v for k, v in ref.items() if not k.startswith("k_")}
        dst.execute(update(d_table).where(*[d_table.c[k] == ref[f"k_{k}"] for k in pk]).values(**values))
    return count


def _fix_sequences(dst: Connection, table: Table) -> None:
    """Move an id sequence past the copied ids so new rows do not collide (PostgreSQL)."""
    pk = list(table.primary_key.columns)
    if dst.dialect.name != "postgresql" or len(pk) != 1:
        return
    seq = dst.execute(text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": pk[0].name}).scalar()
    if seq:
        top = dst.execute(select(func.max(pk[0]))).scalar()
        dst.execute(text("SELECT setval(:s, :v, :called)"), {"s": seq, "v": int(top or 1), "called": top is not None})


def migrate_data(source: str, target: str, progress: Callable[[str], None] = print) -> dict[str, int]:
    """Copy every table of `source` into the empty database `target`; returns rows copied per table."""
    if _same(source, target):
        raise MigrateError("source and target are the same database")
    src_engine, dst_engine = make_engine(source, immediate=False), make_engine(target)
    started = time.monotonic()
    try:
        migrate(src_engine)
        migrate(dst_engine)
        src_meta, dst_meta = _tables(src_engine), _tables(dst_engine)
        names = [t.name for t in dst_meta.sorted_tables if t.name in src_meta.tables and t.name not in SKIPPED]
        names = [n for n in names if not n.startswith("procrastinate")]
        with dst_engine.connect() as dst:
            busy = [
                n for n in names if n not in MERGED and dst.execute(select(func.count()).select_from(dst_meta.tables[n])).scalar()
            ]
        if busy:
            raise MigrateError(f"the target database is not empty ({', '.join(busy)}): use a fresh one")
        counts: dict[str, int] = {}
        with src_engine.connect() as src, dst_engine.begin() as dst:
            for name in names:
                counts[name] = _copy_table(src, dst, src_meta.tables[name], dst_meta.tables[name])
                _fix_sequences(dst, dst_meta.tables[name])
                progress(f"{name}: {counts[name]} rows")
            for name in names:
                have = int(dst.execute(select(func.count()).select_from(dst_meta.tables[name])).scalar() or 0)
                if have < counts[name]:
                    raise MigrateError(f"{name}: copied {counts[name]} rows but the target holds {have}")
        progress(f"copied {sum(counts.values())} rows in {len(names)} tables in {time.monotonic() - started:.1f}s")
        return counts
    finally:
        src_engine.dispose()
        dst_engine.dispose()
