"""The Workers page: who polls, how fast, how late; sites nobody polls stand out; admins forget dead workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth.access import Admin, Viewer, client_ip
from server.runtime import Services, get_services
from server.services.workers import forget_worker
from server.web.pages.common import render
from server.web.views_workers import workers_view

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, svc: SvcDep, _p: Viewer) -> Response:
    """Each worker's last heartbeat, checks per minute and lag; each site's state."""
    return render(request, "workers.html", w=workers_view(svc))


@router.post("/workers/{worker_id}/forget")
def forget_page(request: Request, svc: SvcDep, p: Admin, worker_id: int) -> Response:
    """The 'Forget' button of a stopped or silent worker (admin, CSRF-checked, audited)."""
    forget_worker(svc, p, client_ip(request), worker_id)
    return RedirectResponse("/workers", status_code=303)
