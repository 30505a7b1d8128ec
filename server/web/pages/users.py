"""Admin pages: users (create, role, disable/enable, 2FA reset; step-up protected) and the audit log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from server.auth.access import Admin, client_ip
from server.auth.grants import LABELS
from server.auth.passwords import UserError, generate_password
from server.auth.stepup import FreshAdmin
from server.runtime import Services, get_services
from server.services import audit as auditlog
from server.services import users as usermgmt
from server.store import accounts
from server.web.fields import Name, Password, RowId
from server.web.pages.common import render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
ROLE_FIELD = Annotated[str, Form(pattern="^(viewer|operator|admin)$")]


def _users_page(request: Request, svc: Services, status: int = 200, error: str | None = None, **extra: object) -> Response:
    with svc.reader.connect() as conn:
        people = [usermgmt.describe(conn, u) for u in accounts.list_users(conn)]
    return render(request, "admin_users.html", status=status, people=people, error=error, **extra)


@router.get("/admin/users", response_class=HTMLResponse)
def users_page(request: Request, svc: SvcDep, _p: FreshAdmin) -> Response:
    """Every user, their role, state and second factors, and a form to add one."""
    return _users_page(request, svc)


@router.post("/admin/users", response_class=HTMLResponse)
def create_user_form(
    request: Request, svc: SvcDep, p: FreshAdmin, name: Name = "", role: ROLE_FIELD = "viewer", password: Password = ""
) -> Response:
    """Add a user; with no password given, a random one is made and shown once."""
    generated = not password
    secret = password or generate_password()
    try:
        with svc.engine.begin() as conn:
            usermgmt.add_user(conn, p.user, client_ip(request), name.strip(), role, secret)
    except UserError as exc:
        return _users_page(request, svc, status=422, error=str(exc))
    return _users_page(request, svc, status=201, created=name.strip(), password=secret if generated else None)


def _user_page(request: Request, svc: Services, user_id: int, status: int = 200, error: str | None = None) -> Response:
    with svc.reader.connect() as conn:
        found = accounts.get_user(conn, user_id)
        person = usermgmt.describe(conn, found) if found else None
    if person is None:
        return render(request, "error.html", status=404, status_code=404, message="No such user.")
    return render(request, "admin_user.html", status=status, person=person, error=error, grant_labels=LABELS)


@router.get("/admin/users/{user_id}", response_class=HTMLResponse)
def user_page(request: Request, svc: SvcDep, _p: FreshAdmin, user_id: int) -> Response:
    """One user: change the role, disable or enable, reset their second factors."""
    return _user_page(request, svc, user_id)


def _change(
    request: Request, svc: Services, user_id: int, job: str, p_user: accounts.User, role: str = "",
    grants: list[str] | None = None,
) -> Response:
    ip = client_ip(request)
    try:
        with svc.engine.begin() as conn:
            if job == "role":
                usermgmt.set_role(conn, p_user, ip, user_id, role)
            elif job == "grants":
                usermgmt.set_grants(conn, p_user, ip, user_id, grants or [])
            elif job in ("disable", "enable"):
                usermgmt.set_disabled(conn, p_user, ip, user_id, job == "disable")
            else:
                usermgmt.reset_2fa(conn, p_user, ip, user_id)
    except LookupError:
        return render(request, "error.html", status=404, status_code=404, message="No such user.")
    except UserError as exc:
        return _user_page(request, svc, user_id, status=409, error=str(exc))
    return RedirectResponse(f"/admin/users/{user_id}", status_code=303)


@router.post("/admin/users/{user_id}/role")
def role_form(request: Request, svc: SvcDep, p: FreshAdmin, user_id: int, role: ROLE_FIELD = "viewer") -> Response:
    """Change a user's role (their sessions end, so the new role applies at once)."""
    return _change(request, svc, user_id, "role", p.user, role)


@router.post("/admin/users/{user_id}/grants")
def grants_form(
    request: Request, svc: SvcDep, p: FreshAdmin, user_id: int, grant: Annotated[list[str], Form(max_length=8)] = []  # noqa: B006
) -> Response:
    """Set an operator's permissions (directory accounts, terminal): the boxes ticked are what they hold."""
    return _change(request, svc, user_id, "grants", p.user, grants=grant)


@router.post("/admin/users/{user_id}/disable")
def disable_form(request: Request, svc: SvcDep, p: FreshAdmin, user_id: int) -> Response:
    """Disable a user: their sessions end on every device; their tokens stop working."""
    return _change(request, svc, user_id, "disable", p.user)


@router.post("/admin/users/{user_id}/enable")
def enable_form(request: Request, svc: SvcDep, p: FreshAdmin, user_id: int) -> Response:
    """Enable a disabled user again."""
    return _change(request, svc, user_id, "enable", p.user)


@router.post("/admin/users/{user_id}/reset-2fa")
def reset_form(request: Request, svc: SvcDep, p: FreshAdmin, user_id: int) -> Response:
    """Remove a user's authenticator app, passkeys and recovery codes (a lost phone); their sessions end."""
    return _change(request, svc, user_id, "reset", p.user)


@router.get("/admin/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    svc: SvcDep,
    _p: Admin,
    before: RowId = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """The audit log, newest first, a page at a time; CSV and JSON Lines export links."""
    return render(request, "admin_audit.html", log=auditlog.page(svc.reader, limit, before), limit=limit)
