"""View model of polling health: each worker's heartbeat, checks per minute and lag; sites; the scheduler leader; the queue."""

from __future__ import annotations

import time
from typing import NotRequired, TypedDict

from server.runtime import Services
from server.store import leases, shards
from server.store import workers as store
from server.store.jsontypes import JsonObject
from server.store.shards import StoredShare
from server.store.workers import QueueFigures, WorkerRow
from server.web.views import age


class WorkerItem(TypedDict):
    """A worker as the page and the API list it (the embedded poller reads as one, without ids and rates)."""

    id: int | None
    name: str
    site: str | None
    host: str
    pid: int | None
    state: str
    age: float
    started_at: float | None
    checks_total: int
    checks_per_min: float | None
    failed_per_min: float | None
    lag_p50: float | None
    lag_p95: float | None
    in_flight: int
    concurrency: int


class Share(TypedDict):
    """A worker's shard as the scheduling leader assigned it (all None when it has none)."""

    devices: int | None
    checks: int | None
    weight: float | None
    behind: bool


class QueueWorkerItem(WorkerItem, Share):
    """A queue worker: its row, when it was last seen, and its shard."""

    seen: str


class SiteView(TypedDict):
    """A pool of workers (a site, or the default pool): its devices, workers, live ones, and their rate."""

    name: str
    devices: int
    workers: int
    live: int
    state: str
    checks_per_min: float


class Leader(TypedDict):
    """Who leads the scheduling, with which fence, for how much longer."""

    holder: str | None
    fence: int
    expires_in: float


class WorkersView(TypedDict):
    """What the workers page and GET /api/v1/workers show."""

    scheduler: str
    silent_after: float
    items: list[WorkerItem]
    sites: list[SiteView]
    queue: QueueFigures
    leader: Leader | None
    this_server: NotRequired[JsonObject]


def _in_process(svc: Services) -> list[WorkerItem]:
    """The embedded poller as one pseudo-worker, so both modes read alike."""
    poller = svc.poller
    if poller is None:
        return []
    st = poller.stats
    return [
        WorkerItem(
            id=None, name="this server", site=None, host="", pid=None, state="running", age=0.0,
            started_at=None, checks_total=st.started, checks_per_min=None, failed_per_min=None,
            lag_p50=round(st.lag_quantile(0.5), 3), lag_p95=round(st.lag_quantile(0.95), 3),
            in_flight=st.in_flight, concurrency=svc.settings.poll_concurrency,
        )
    ]  # fmt: skip


def _share(row: StoredShare | None) -> Share:
    """A worker's shard as the scheduling leader assigned it: devices and checks, its weight, whether it sheds."""
    if row is None:
        return {"devices": None, "checks": None, "weight": None, "behind": False}
    return {"devices": row["devices"], "checks": row["checks"], "weight": round(float(row["weight"]), 2),
            "behind": bool(row["behind"])}  # fmt: skip


def _item(w: WorkerRow, now: float, share: Share) -> QueueWorkerItem:
    return QueueWorkerItem(
        id=w["id"], name=w["name"], site=w["site"], host=w["host"], pid=w["pid"], state=w["state"], age=w["age"],
        started_at=w["started_at"], checks_total=w["checks_total"], checks_per_min=w["checks_per_min"],
        failed_per_min=w["failed_per_min"], lag_p50=w["lag_p50"], lag_p95=w["lag_p95"], in_flight=w["in_flight"],
        concurrency=w["concurrency"], seen=age(now - w["age"], now), **share,
    )  # fmt: skip


def workers_view(svc: Services) -> WorkersView:
    """What the workers page and GET /api/v1/workers show."""
    s = svc.settings
    silent = s.worker_silent_seconds
    out = WorkersView(scheduler=s.scheduler, silent_after=silent, items=[], sites=[], queue={}, leader=None)
    if s.scheduler != "queue":
        out["items"] = _in_process(svc)
        return out
    now = time.time()
    with svc.reader.connect() as conn:
        rows = store.list_workers(conn, silent, s.worker_dead_seconds)
        sites = store.known_sites(conn)
        pools = store.device_pools(conn, sites)
        out["queue"] = store.queue_figures(conn)
        lease = leases.current(conn, "scheduler")
        share = shards.shares(conn)
    out["items"] = [_item(w, now, _share(share.get(w["name"]))) for w in rows]
    if lease is not None and lease.live:
        out["leader"] = {"holder": lease.holder, "fence": lease.fence, "expires_in": round(lease.expires_at - lease.now, 1)}
    for pool in sorted(set(pools) | sites | {store.DEFAULT_POOL}):
        members = [w for w in rows if (w["site"] or store.DEFAULT_POOL) == pool]
        live = sum(1 for w in members if w["state"] == "running")
        devices = len(pools.get(pool, []))
        out["sites"].append(
            SiteView(
                name=pool,
                devices=devices,
                workers=len(members),
                live=live,
                state="ok" if live or not devices else "silent",
                checks_per_min=sum(w["checks_per_min"] for w in members if w["state"] == "running"),
            )
        )
    dispatcher = svc.dispatcher
    figures = getattr(dispatcher, "figures", None)
    if callable(figures):
        out["this_server"] = figures()
    return out
