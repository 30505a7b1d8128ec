"""What the benchmarks (bench/) and tests measure and seed, as store functions: the backend's pid, sizes, counts,
scratch devices, the statements an engine sends."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event, func, insert, select, text

from server.config.inventory import DeviceSpec
from server.store.partitions import PARENT, is_partitioned
from server.store.schema import device_status, devices, samples


def backend_pid(conn: Connection) -> int:
    """The PostgreSQL server process serving this connection (its CPU can be read in /proc), 0 on SQLite."""
    if conn.dialect.name != "postgresql":
        return 0
    return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def samples_bytes(conn: Connection) -> int | None:
    """Bytes on disk of the day partitions of `samples` (tables, indexes, TOAST); None where it is not partitioned."""
    if not is_partitioned(conn):
        return None
    size = conn.execute(
        text("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
             "WHERE i.inhparent = CAST(:parent AS regclass)"),
        {"parent": PARENT},
    ).scalar()  # fmt: skip
    return int(size or 0)


def count_samples(conn: Connection) -> int:
    """How many raw samples are stored."""
    return int(conn.execute(select(func.count()).select_from(samples)).scalar_one())


def add_quiet_devices(conn: Connection, names: Sequence[str], state: str = "up", address: str = "192.0.2.1") -> list[int]:
    """Disabled devices (nothing polls them), without secrets, each with a status row in `state`; their ids in order."""
    now = time.time()
    ids = []
    for name in names:
        spec = DeviceSpec(name=name, address=address).model_dump(mode="json", exclude_none=True)
        row = {"name": name, "address": address, "tags": [], "interval": 60, "enabled": False, "spec": spec, "source": "api",
               "created_at": now, "updated_at": now}  # fmt: skip
        ids.append(int(conn.execute(insert(devices).values(row)).inserted_primary_key[0]))  # type: ignore[index]
        conn.execute(insert(device_status).values(device_id=ids[-1], state=state, state_since=now, facts={}, tables={},
                                                  checks={}, metrics={}))  # fmt: skip
    return ids


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement the engine sends while the block runs, in order (how many writes a poll costs, what is read)."""
    seen: list[str] = []

    def _seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", _seen)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _seen)
