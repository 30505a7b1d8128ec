"""View model of polling health: each worker's heartbeat, checks per minute and lag; sites; the scheduler leader; the queue."""

from __future__ import annotations

import time
from typing import Any

from server.runtime import Services
from server.store import leases, shards
from server.store import workers as store
from server.web.views import age

WORKER_FIELDS = (
    "id", "name", "site", "host", "pid", "state", "age", "started_at", "checks_total", "checks_per_min",
    "failed_per_min", "lag_p50", "lag_p95", "in_flight", "concurrency",
)  # fmt: skip


def _in_process(svc: Services) -> list[dict[str, Any]]:
    """The embedded poller as one pseudo-worker, so both modes read alike."""
    poller = svc.poller
    if poller is None:
        return []
    st = poller.stats
    return [
        {
            "id": None, "name": "this server", "site": None, "host": "", "pid": None, "state": "running", "age": 0.0,
            "started_at": None, "checks_total": st.started, "checks_per_min": None, "failed_per_min": None,
            "lag_p50": round(st.lag_quantile(0.5), 3), "lag_p95": round(st.lag_quantile(0.95), 3),
            "in_flight": st.in_flight, "concurrency": svc.settings.poll_concurrency,
        }
    ]  # fmt: skip


def _share(row: dict[str, Any] | None) -> dict[str, Any]:
    """A worker's shard as the scheduling leader assigned it: devices and checks, its weight, whether it sheds."""
    if row is None:
        return {"devices": None, "checks": None, "weight": None, "behind": False}
    return {"devices": row["devices"], "checks": row["checks"], "weight": round(float(row["weight"]), 2),
            "behind": bool(row["behind"])}  # fmt: skip


def workers_view(svc: Services) -> dict[str, Any]:
    """What the workers page and GET /api/v1/workers show."""
    s = svc.settings
    silent = s.worker_silent_seconds
    out: dict[str, Any] = {
        "scheduler": s.scheduler,
        "silent_after": silent,
        "items": [],
        "sites": [],
        "queue": {},
        "leader": None,
    }
    if s.scheduler != "queue":
        out["items"] = _in_process(svc)
        return out
    now = time.time()
    with svc.reader.connect() as conn:
        rows = store.list_workers(conn, silent)
        sites = store.known_sites(conn)
        pools = store.device_pools(conn, sites)
        out["queue"] = store.queue_figures(conn)
        lease = leases.current(conn, "scheduler")
        share = shards.shares(conn)
    out["items"] = [{k: w[k] for k in WORKER_FIELDS} | {"seen": age(now - w["age"], now)} | _share(share.get(w["name"]))
                    for w in rows]  # fmt: skip
    if lease is not None and lease.live:
        out["leader"] = {"holder": lease.holder, "fence": lease.fence, "expires_in": round(lease.expires_at - lease.now, 1)}
    for pool in sorted(set(pools) | sites | {store.DEFAULT_POOL}):
        members = [w for w in rows if (w["site"] or store.DEFAULT_POOL) == pool]
        live = sum(1 for w in members if w["state"] == "running")
        devices = len(pools.get(pool, []))
        out["sites"].append(
            {
                "name": pool,
                "devices": devices,
                "workers": len(members),
                "live": live,
                "state": "ok" if live or not devices else "silent",
                "checks_per_min": sum(w["checks_per_min"] for w in members if w["state"] == "running"),
            }
        )
    dispatcher = svc.dispatcher
    figures = getattr(dispatcher, "figures", None)
    if callable(figures):
        out["this_server"] = figures()
    return out
