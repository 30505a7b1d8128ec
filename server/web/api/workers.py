"""Polling health: each worker's heartbeat, checks per minute and lag; sites; the scheduler leader; the queue."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request

from server.auth.access import Admin, Principal, Viewer, client_ip
from server.runtime import Services, get_services
from server.store import accounts, leases
from server.store import workers as store
from server.web.views import age

router = APIRouter(tags=["workers"])
SvcDep = Annotated[Services, Depends(get_services)]
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
    out["items"] = [{k: w[k] for k in WORKER_FIELDS} | {"seen": age(now - w["age"], now)} for w in rows]
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


def forget_worker(svc: Services, p: Principal, ip: str | None, worker_id: int) -> str:
    """Remove a stopped or silent worker (its alert resolves; a live one would only register again)."""
    with svc.engine.begin() as conn:
        found = [w for w in store.list_workers(conn, svc.settings.worker_silent_seconds) if w["id"] == worker_id]
        if not found:
            raise HTTPException(404, "no such worker")
        if found[0]["state"] == "running":
            raise HTTPException(409, "the worker is running; stop it first (it would register again)")
        name = store.forget(conn, worker_id, time.time()) or ""
        accounts.write_audit(conn, p.user, "worker.forget", name, {"site": found[0]["site"]}, ip)
    return name


@router.get("/api/v1/workers")
def list_workers(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """Workers with their health, sites, the scheduler leader and the queue (scheduler: queue)."""
    return workers_view(svc)


@router.delete("/api/v1/workers/{worker_id}", status_code=204)
def delete_worker(svc: SvcDep, p: Admin, request: Request, worker_id: int) -> None:
    """Forget a stopped or silent worker."""
    forget_worker(svc, p, client_ip(request), worker_id)
