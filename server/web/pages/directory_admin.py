"""Admin pages of directories: the list (file ones read-only), a form to add or change one (the bind password is
write-only: left empty, the stored one stays), and removal. Step-up protected and audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth.access import client_ip
from server.auth.stepup import FreshAdmin
from server.runtime import Services, get_services
from server.services import directories
from server.services.errors import ServiceError
from server.store import directories as rows
from server.web.pages.common import render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
Text = Annotated[str, Form(max_length=1024)]
Lines = Annotated[str, Form(max_length=64 * 1024)]


def _page(request: Request, svc: Services, status: int = 200, error: str | None = None, form: dict[str, Any] | None = None,
          ) -> Response:
    with svc.reader.connect() as conn:
        items = [directories.describe(r) for r in rows.list_rows(conn)]
    return render(request, "admin_directories.html", status=status, items=items, error=error, form=form or {})


@router.get("/admin/directories", response_class=HTMLResponse)
def list_page(request: Request, svc: SvcDep, _p: FreshAdmin) -> Response:
    """Every directory and a form to add one."""
    return _page(request, svc)


@router.get("/admin/directories/{name}", response_class=HTMLResponse)
def edit_page(request: Request, svc: SvcDep, _p: FreshAdmin, name: Annotated[str, Path(max_length=64)]) -> Response:
    """The form filled with one directory's settings (never its password)."""
    with svc.reader.connect() as conn:
        found = rows.get_row(conn, name)
    if found is None:
        return render(request, "error.html", status=404, status_code=404, message="No such directory.")
    return _page(request, svc, form=directories.describe(found))


def _split(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


@router.post("/admin/directories", response_class=HTMLResponse)
def save_form(
    request: Request, svc: SvcDep, p: FreshAdmin,
    name: Annotated[str, Form(max_length=64)] = "", kind: Annotated[str, Form(max_length=32)] = "active-directory",
    host: Annotated[str, Form(max_length=253)] = "", port: Annotated[str, Form(max_length=5)] = "",
    security: Annotated[str, Form(max_length=16)] = "ldaps", allow_plain: Annotated[str, Form(max_length=4)] = "",
    verify: Annotated[str, Form(max_length=4)] = "", ca_file: Text = "", tls_name: Text = "", bind_dn: Text = "",
    bind_password: Text = "", base_dns: Lines = "", groups: Lines = "", protected_groups: Lines = "", deny: Lines = "",
    timeout_seconds: Annotated[str, Form(max_length=8)] = "5", search_limit: Annotated[str, Form(max_length=4)] = "20",
) -> Response:
    """Add or change a directory (not one from the file); an empty password keeps the stored one."""
    values: dict[str, Any] = {
        "name": name.strip(), "kind": kind, "host": host.strip(), "port": port.strip() or None, "security": security,
        "allow_plain": allow_plain == "on", "verify": verify == "on", "ca_file": ca_file.strip() or None,
        "tls_name": tls_name.strip() or None, "bind_dn": bind_dn.strip(), "bind_password": bind_password,
        "base_dns": _split(base_dns), "groups": _split(groups), "protected_groups": _split(protected_groups),
        "deny": _split(deny), "timeout_seconds": timeout_seconds.strip() or 5, "search_limit": search_limit.strip() or 20,
    }
    try:
        with svc.engine.begin() as conn:
            directories.save_admin(conn, svc, p.user, client_ip(request), values)
    except ServiceError as exc:
        shown = {**values, "bind_password": ""}
        return _page(request, svc, status=exc.status, error=exc.message, form=shown)
    return RedirectResponse("/admin/directories", status_code=303)


@router.post("/admin/directories/{name}/delete")
def delete_form(request: Request, svc: SvcDep, p: FreshAdmin, name: Annotated[str, Path(max_length=64)]) -> Response:
    """Remove a directory made here."""
    try:
        with svc.engine.begin() as conn:
            directories.delete_admin(conn, p.user, client_ip(request), name)
    except ServiceError as exc:
        return _page(request, svc, status=exc.status, error=exc.message)
    return RedirectResponse("/admin/directories", status_code=303)
