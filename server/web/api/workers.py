"""JSON API of polling health: workers, sites, the scheduler leader and the queue; forgetting a dead worker."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from server.auth.access import Admin, Viewer, client_ip
from server.runtime import Services, get_services
from server.services.workers import forget_worker
from server.web.views_workers import workers_view

router = APIRouter(tags=["workers"])
SvcDep = Annotated[Services, Depends(get_services)]


@router.get("/api/v1/workers")
def list_workers(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """Workers with their health, sites, the scheduler leader and the queue (scheduler: queue)."""
    return dict(workers_view(svc))


@router.delete("/api/v1/workers/{worker_id}", status_code=204)
def delete_worker(svc: SvcDep, p: Admin, request: Request, worker_id: int) -> None:
    """Forget a stopped or silent worker."""
    forget_worker(svc, p, client_ip(request), worker_id)
