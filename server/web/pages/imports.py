"""Admin page: upload an Uptime Kuma backup or a LibreNMS device list and review the YAML it would give."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile

from server.auth.access import Admin, client_ip
from server.imports.sources import SOURCES
from server.runtime import Services, get_services
from server.services import imports as imports_service
from server.services.errors import ServiceError
from server.web.pages.common import render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
CHOICES = [(key, label) for key, (label, _) in SOURCES.items()]


@router.get("/admin/import", response_class=HTMLResponse)
def import_page(request: Request, _p: Admin) -> Response:
    """The upload form."""
    return render(request, "admin_import.html", choices=CHOICES, source="uptime-kuma")


@router.post("/admin/import", response_class=HTMLResponse)
async def import_preview(request: Request, svc: SvcDep, p: Admin) -> Response:
    """Convert the uploaded file and show the YAML to review (secrets hidden); nothing is added."""
    form = await request.form()
    source, upload = form.get("source"), form.get("file")
    chosen = source if isinstance(source, str) and source in SOURCES else ""
    if not isinstance(upload, UploadFile):
        error = "choose the exported JSON file to upload"
        return render(request, "admin_import.html", status=422, choices=CHOICES, source=chosen, error=error)
    data = await upload.read()
    try:
        found = imports_service.preview(svc, p, client_ip(request), chosen, data)
    except ServiceError as exc:
        return render(request, "admin_import.html", status=exc.status, choices=CHOICES, source=chosen, error=str(exc))
    return render(request, "admin_import.html", choices=CHOICES, source=chosen, preview=found)
