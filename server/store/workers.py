"""Polling workers of `scheduler: queue`: registry and heartbeats, the run log, check hand-off, queue figures."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NotRequired, TypedDict

from procrastinate.connector import BaseConnector
from procrastinate.exceptions import NoResult
from sqlalchemy import Connection, delete, func, insert, select, text, update

from server.store.alerts import resolve_event_alert
from server.store.leases import db_now
from server.store.metrics import labels_key
from server.store.schema import alert_rules, alerts, check_runs, devices, host_keys, workers

SITE_TAG = "site-"
DEFAULT_POOL = "default"  # the pool of devices no site worker claims


class WorkerNameTaken(Exception):
    """Another live worker already runs under this name."""


class WorkerFigures(TypedDict):
    """A worker's own figures, as its heartbeat stores them."""

    checks_total: int
    checks_per_min: float
    failed_per_min: float
    lag_p50: float | None
    lag_p95: float | None
    in_flight: int


class WorkerStats(WorkerFigures):
    """A heartbeat: the worker's figures (and the id the queue gave its process, once known)."""

    queue_worker_id: NotRequired[int]


class WorkerRow(WorkerFigures):
    """A worker's row (its figures and the rest), its age by the database clock and its state (running, silent or stopped)."""

    id: int
    name: str
    site: str | None
    host: str
    pid: int | None
    instance: str
    status: str
    started_at: float
    last_seen: float
    concurrency: int
    queue_worker_id: int | None
    age: float
    state: str


class QueueFigures(TypedDict, total=False):
    """Jobs waiting and running in the queue and the oldest wait (empty off PostgreSQL)."""

    waiting: int
    running: int
    oldest_wait: float


class RunLogRow(TypedDict):
    """One check run in the run log (slot None: a 'poll now' run)."""

    worker: str
    device_id: int
    check_name: str
    slot: int | None
    due: float | None
    started: float
    lag: float | None
    ms: float
    ok: bool


def device_site(tags: Iterable[str], known_sites: set[str]) -> str | None:
    """The site whose workers poll a device: its first `site-NAME` tag naming a site that has workers."""
    for tag in sorted(tags):
        if tag.startswith(SITE_TAG) and tag[len(SITE_TAG) :] in known_sites:
            return tag[len(SITE_TAG) :]
    return None


def register(
    conn: Connection, name: str, site: str | None, host: str, pid: int, instance: str, concurrency: int, stale_after: float
) -> int:
    """Record a starting worker (re-using its row after a restart); refuses a name a live worker holds."""
    now = db_now(conn)
    row = conn.execute(select(workers).where(workers.c.name == name).with_for_update()).first()
    values = {
        "site": site,
        "host": host[:128],
        "pid": pid,
        "instance": instance,
        "status": "running",
        "started_at": now,
        "last_seen": now,
        "checks_per_min": 0.0,
        "failed_per_min": 0.0,
        "lag_p50": None,
        "lag_p95": None,
        "in_flight": 0,
        "concurrency": concurrency,
    }
    if row is None:
        result = conn.execute(insert(workers).values(name=name, checks_total=0, **values))
        return int(result.inserted_primary_key[0])  # type: ignore[index]
    if row.status == "running" and row.instance != instance and now - row.last_seen < stale_after:
        raise WorkerNameTaken(f"a worker named {name!r} is running on {row.host} (pid {row.pid}); give this one --name")
    conn.execute(update(workers).where(workers.c.id == row.id).values(**values))
    return int(row.id)


def heartbeat(conn: Connection, worker_id: int, instance: str, stats: WorkerStats) -> float | None:
    """Store a worker's figures; returns the database's now, or None if its row was forgotten or taken over."""
    now = db_now(conn)
    done = conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.instance == instance)
        .values(last_seen=now, status="running", **stats)
    ).rowcount
    return now if done else None


def mark_stopped(conn: Connection, worker_id: int, instance: str) -> None:
    """A clean stop: the worker is no longer expected (no 'silent' alert)."""
    conn.execute(
        update(workers)
        .where(workers.c.id == worker_id, workers.c.instance == instance)
        .values(status="stopped", last_seen=db_now(conn), in_flight=0, checks_per_min=0.0, failed_per_min=0.0)
    )


def forget(conn: Connection, worker_id: int, now: float) -> str | None:
    """Remove a worker's row (and resolve its 'silent' alert); returns its name, or None if unknown."""
    name = conn.execute(select(workers.c.name).where(workers.c.id == worker_id)).scalar()
    if name is None:
        return None
    conn.execute(delete(workers).where(workers.c.id == worker_id))
    for _alert_id, device_id, key in open_event_alerts(conn, "worker-silent"):
        if key == worker_label(str(name)):
            resolve_event_alert(conn, "worker-silent", device_id, key, now, f"worker {name} was removed by an admin")
    return str(name)


def list_workers(conn: Connection, silent_after: float, lost_after: float | None = None) -> list[WorkerRow]:
    """Every worker with its age (database clock) and state: running, silent or stopped; with `lost_after` (three
    heartbeats: when the scheduling leader counts a worker dead and gives its devices to the others), a running one
    whose heartbeat is older than that and not yet `silent_after` is lost."""
    now = db_now(conn)
    out = []
    for r in conn.execute(select(workers).order_by(workers.c.site.is_not(None), workers.c.site, workers.c.name)):
        age = max(0.0, now - float(r.last_seen))
        out.append(
            WorkerRow(
                id=r.id, name=r.name, site=r.site, host=r.host, pid=r.pid, instance=r.instance, status=r.status,
                started_at=r.started_at, last_seen=r.last_seen, checks_total=r.checks_total, checks_per_min=r.checks_per_min,
                failed_per_min=r.failed_per_min, lag_p50=r.lag_p50, lag_p95=r.lag_p95, in_flight=r.in_flight,
                concurrency=r.concurrency, queue_worker_id=r.queue_worker_id, age=age,
                state=_state(r.status, age, silent_after, lost_after),
            )
        )  # fmt: skip
    return out


def _state(status: str, age: float, silent_after: float, lost_after: float | None) -> str:
    if status != "running":
        return status
    if age > silent_after:
        return "silent"
    return "lost" if lost_after is not None and age > lost_after else "running"


def known_sites(conn: Connection) -> set[str]:
    """Sites that have (or had) a worker: their devices are polled only by that site's workers."""
    return {str(s) for s in conn.execute(select(workers.c.site).where(workers.c.site.is_not(None)).distinct()).scalars()}


def device_pools(conn: Connection, sites: set[str]) -> dict[str, list[int]]:
    """Enabled device ids per pool: each known site, and DEFAULT_POOL for the rest."""
    pools: dict[str, list[int]] = {}
    for device_id, tags in conn.execute(select(devices.c.id, devices.c.tags).where(devices.c.enabled.is_(True))):
        pool = device_site(tags or (), sites) or DEFAULT_POOL
        pools.setdefault(pool, []).append(int(device_id))
    return {k: sorted(v) for k, v in pools.items()}


def device_routes(conn: Connection, sites: set[str]) -> dict[int, str | None]:
    """Each device's polling site (None: the default pool)."""
    return {int(i): device_site(tags or (), sites) for i, tags in conn.execute(select(devices.c.id, devices.c.tags))}


def inventory_fingerprint(conn: Connection) -> tuple[object, ...]:
    """Changes whenever a device, an enrolled host key, an API rule or a site is added, changed or removed."""
    return (
        *conn.execute(select(func.count(), func.max(devices.c.updated_at), func.sum(devices.c.id))).one(),
        *conn.execute(select(func.count(), func.max(host_keys.c.id))).one(),
        *conn.execute(select(func.count(), func.max(alert_rules.c.updated_at))).one(),
        tuple(sorted(known_sites(conn))),
    )


# ---------------------------------------------------------------- run log and hand-off


def record_runs(conn: Connection, rows: list[RunLogRow]) -> None:
    """Append check runs (worker, device_id, check_name, slot, due, started, lag, ms, ok)."""
    if rows:
        conn.execute(insert(check_runs), rows)


def prune_runs(conn: Connection, before: float) -> int:
    """Drop run-log rows older than `before`."""
    return int(conn.execute(delete(check_runs).where(check_runs.c.started < before)).rowcount or 0)


HANDOFF_SQL = "SELECT state FROM check_handoff WHERE device_id = %(device_id)s AND check_name = %(check)s"


async def load_handoff_async(connector: BaseConnector, device_id: int, check: str) -> dict[str, object] | None:
    """What the last worker to run this check left for the next one (on the queue's async pool: no thread hop)."""
    try:
        row = await connector.execute_query_one_async(query=HANDOFF_SQL, device_id=device_id, check=check)
    except NoResult:  # nothing handed over yet
        return None
    state = row.get("state")
    return state if isinstance(state, dict) else None


def queue_figures(conn: Connection) -> QueueFigures:
    """Jobs waiting and running in the queue, and how long the oldest has waited (PostgreSQL only)."""
    if conn.dialect.name != "postgresql":
        return {}
    counts: dict[str, int] = dict(
        conn.execute(
            text("SELECT status::text, count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing') GROUP BY status")
        ).all()
    )
    oldest = conn.execute(
        text(
            "SELECT extract(epoch FROM clock_timestamp() - min(e.at)) FROM procrastinate_jobs j "
            "JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred' WHERE j.status = 'todo'"
        )
    ).scalar()
    return {"waiting": int(counts.get("todo", 0)), "running": int(counts.get("doing", 0)), "oldest_wait": float(oldest or 0.0)}


APP_NAME_PREFIX = "pocketnoc-worker-"  # + the worker's instance: the application_name of its queue connections


def worker_app_name(instance: str) -> str:
    """The PostgreSQL application_name a worker's queue connections carry (seen in pg_stat_activity)."""
    return f"{APP_NAME_PREFIX}{instance}"[:63]


ORPHANS_SQL = """
SELECT j.id FROM procrastinate_jobs j JOIN workers w ON w.queue_worker_id = j.worker_id
WHERE j.status = 'doing' AND j.task_name = :task
  AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = left(:prefix || w.instance, 63))
"""


def orphaned_jobs(conn: Connection, task: str) -> list[int]:
    """Jobs in "doing" whose worker has no connection to the database left: it was killed (PostgreSQL only).

    A live worker always holds its queue connections (the pool's and the LISTEN one); a SIGKILLed
    one loses them at once, long before three of its heartbeats are missed.
    """
    if conn.dialect.name != "postgresql":
        return []
    return [int(i) for i in conn.execute(text(ORPHANS_SQL), {"task": task, "prefix": APP_NAME_PREFIX}).scalars()]


def job_states(conn: Connection, ids: list[int]) -> dict[int, str]:
    """Status of queue jobs by id; finished jobs that were deleted are simply absent."""
    query = text("SELECT id, status::text FROM procrastinate_jobs WHERE id = ANY(:ids)")
    return {int(i): str(s) for i, s in conn.execute(query, {"ids": list(ids)})}


# ---------------------------------------------------------------- silence alerts


def worker_label(name: str) -> str:
    """The alert label key of a worker's 'silent' alert."""
    return labels_key({"worker": name})


def site_label(site: str) -> str:
    """The alert label key of a site's 'silent' alert."""
    return labels_key({"site": site})


def open_event_alerts(conn: Connection, rule: str) -> list[tuple[int, int, str]]:
    """(alert id, device id, labels key) of the open alerts of one rule."""
    query = select(alerts.c.id, alerts.c.device_id, alerts.c.labels).where(alerts.c.rule == rule, alerts.c.status == "firing")
    return [(int(a), int(d), str(k)) for a, d, k in conn.execute(query)]
