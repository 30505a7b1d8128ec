"""Sharded queue polling in PostgreSQL: live workers, fencing a dead one, re-routing its batches, each worker's share,
the leader's "deferred until" mark, and the claim that applies each (device, check, slot) once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TypedDict

from procrastinate.connector import BaseConnector
from sqlalchemy import Connection, make_url, select, text
from sqlalchemy.dialects import postgresql, sqlite

from server.store import meta
from server.store.jsontypes import JsonValue
from server.store.schema import check_runs, devices
from server.store.tables_shards import worker_shards
from server.store.workers import APP_NAME_PREFIX, RunLogRow

DEFERRED_UNTIL = "queue_deferred_until"
WORKER_QUEUE = "worker-"  # + the worker's name: the queue of the batches of its shard


class WorkerShare(TypedDict):
    """A worker's share as the leader assigns it: devices and checks, its weight, whether it sheds for being behind."""

    name: str
    site: str | None
    devices: int
    checks: int
    weight: float
    behind: bool


class StoredShare(WorkerShare):
    """A worker's share as stored, with when the leader wrote it."""

    updated_at: float


def worker_queue(name: str) -> str:
    """The Procrastinate queue of one worker's batches."""
    return f"{WORKER_QUEUE}{name}"


@dataclass(frozen=True)
class WorkerSeen:
    """A running worker as the leader sees it."""

    name: str
    site: str | None
    instance: str
    age: float  # seconds since its last heartbeat (database clock)
    connected: bool  # it has at least one connection to PostgreSQL
    lag_p95: float | None
    in_flight: int
    concurrency: int


WORKERS_SQL = """
SELECT w.name, w.site, w.instance, extract(epoch FROM clock_timestamp()) - w.last_seen AS age,
       EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = left(:prefix || w.instance, 63)) AS connected,
       w.lag_p95, w.in_flight, w.concurrency
FROM workers w WHERE w.status = 'running' ORDER BY w.name
"""


def running_workers(conn: Connection) -> list[WorkerSeen]:
    """Workers whose row says running, with heartbeat age and whether they hold a connection (PostgreSQL only)."""
    rows = conn.execute(text(WORKERS_SQL), {"prefix": APP_NAME_PREFIX})
    return [WorkerSeen(str(r.name), r.site, str(r.instance), float(r.age), bool(r.connected), r.lag_p95,
                       int(r.in_flight), int(r.concurrency)) for r in rows]  # fmt: skip


def fence_worker(conn: Connection, instance: str) -> int:
    """End every connection of a worker judged dead (e.g. cut off): its check locks are freed and its late writes fail."""
    query = text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = left(:a, 63)")
    return int(conn.execute(query, {"a": APP_NAME_PREFIX + instance}).scalar() or 0)


TAKE_SQL = """
DELETE FROM procrastinate_jobs
WHERE task_name = :task AND queue_name LIKE :prefix AND NOT (queue_name = ANY(:live)) AND status IN ('todo', 'doing')
RETURNING args
"""


def take_orphan_batches(conn: Connection, task: str, live_queues: list[str]) -> list[list[JsonValue]]:
    """Remove the batches (waiting or running) of every worker queue but the live workers'; returns their checks
    (each as the batch job carried it: a JSON array)."""
    rows = conn.execute(text(TAKE_SQL), {"task": task, "prefix": WORKER_QUEUE + "%", "live": live_queues})
    out: list[list[JsonValue]] = []
    for (args,) in rows:
        data = args if isinstance(args, dict) else json.loads(args)
        out.extend(list(c) for c in data.get("checks") or [])
    return out


def deferred_until(conn: Connection) -> float:
    """Up to which due time (database clock) the last leader queued every check."""
    return float(meta.get(conn, DEFERRED_UNTIL) or 0.0)


def set_deferred_until(conn: Connection, until: float) -> None:
    """Record the leader's progress (after the batches are queued, so a new leader never skips a slot)."""
    meta.put(conn, DEFERRED_UNTIL, repr(float(until)))


def save_shares(conn: Connection, rows: list[WorkerShare], now: float) -> None:
    """Replace the workers' shares (name, site, devices, checks, weight, behind)."""
    conn.execute(worker_shards.delete())
    if rows:
        conn.execute(worker_shards.insert(), [{**r, "updated_at": now} for r in rows])


def shares(conn: Connection) -> dict[str, StoredShare]:
    """Each worker's share by name."""
    return {
        str(r.name): StoredShare(name=r.name, site=r.site, devices=r.devices, checks=r.checks, weight=r.weight,
                                 behind=r.behind, updated_at=r.updated_at)
        for r in conn.execute(select(worker_shards))
    }  # fmt: skip


def claim_runs(conn: Connection, rows: list[RunLogRow]) -> set[tuple[int, str, int | None]]:
    """Insert run-log rows; a (device, check, slot) already in the log is refused. Returns the ones inserted, i.e.
    whose outcomes this transaction may apply ('poll now' runs have no slot and are always inserted)."""
    if not rows:
        return set()
    alive = set(conn.execute(select(devices.c.id).where(devices.c.id.in_({r["device_id"] for r in rows}))).scalars())
    rows = [r for r in rows if r["device_id"] in alive]
    if not rows:
        return set()
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(check_runs)
        .values(rows)  # one multi-row INSERT: a batch is one round trip
        .on_conflict_do_nothing(index_elements=["device_id", "check_name", "slot"], index_where=check_runs.c.slot.is_not(None))
        .returning(check_runs.c.device_id, check_runs.c.check_name, check_runs.c.slot)
    )
    return {(int(d), str(c), None if s is None else int(s)) for d, c, s in conn.execute(stmt)}


HANDOFFS_SQL = """
SELECT h.device_id, h.check_name, h.state FROM check_handoff h
JOIN unnest(%(ids)s::int[], %(checks)s::text[]) AS k(device_id, check_name)
  ON h.device_id = k.device_id AND h.check_name = k.check_name
"""


async def load_handoffs_async(
    connector: BaseConnector, keys: list[tuple[int, str]]
) -> dict[tuple[int, str], dict[str, object]]:
    """What the last worker to run each of these checks left for the next one (one query on the queue's async pool)."""
    if not keys:
        return {}
    rows = await connector.execute_query_all_async(
        query=HANDOFFS_SQL, ids=[d for d, _ in keys], checks=[c for _, c in keys]
    )
    return {(int(r["device_id"]), str(r["check_name"])): r["state"] for r in rows if isinstance(r.get("state"), dict)}


def with_app_name(url: str, application_name: str) -> str:
    """A PostgreSQL URL whose connections carry this application_name (other URLs unchanged)."""
    if not url.startswith("postgresql"):
        return url
    return make_url(url).update_query_dict({"application_name": application_name}).render_as_string(hide_password=False)
