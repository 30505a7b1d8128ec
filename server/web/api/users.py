"""JSON API for user management (admin, step-up protected, audited) and the audit log export."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from server.auth.access import Admin, client_ip
from server.auth.passwords import UserError
from server.auth.stepup import FreshAdmin
from server.runtime import Services, get_services
from server.services import audit as auditlog
from server.services import users as usermgmt
from server.store import accounts

router = APIRouter()
SvcDep = Annotated[Services, Depends(get_services)]


class UserChange(BaseModel):
    """What to change about a user (omitted fields stay)."""

    model_config = ConfigDict(extra="forbid")
    role: Literal["viewer", "operator", "admin"] | None = None
    disabled: bool | None = None
    grants: list[Literal["directory", "terminal"]] | None = None  # the operator's permissions, exactly (server.auth.grants)


def _describe(svc: Services, user_id: int) -> dict[str, Any]:
    with svc.reader.connect() as conn:
        found = accounts.get_user(conn, user_id)
        if found is None:
            raise HTTPException(404, "no such user")
        return dict(usermgmt.describe(conn, found))


@router.get("/api/v1/users/{user_id}", tags=["users"])
def get_user(svc: SvcDep, _p: Admin, user_id: int) -> dict[str, Any]:
    """A user: role, state, which second factors they have, how many sessions."""
    return _describe(svc, user_id)


@router.patch("/api/v1/users/{user_id}", tags=["users"])
def change_user(svc: SvcDep, p: FreshAdmin, request: Request, user_id: int, body: UserChange) -> dict[str, Any]:
    """Change the role, disable or enable (the user's sessions end; nobody demotes or disables themselves), and/or set
    an operator's grants (`directory`, `terminal`; viewers hold none, admins all)."""
    ip = client_ip(request)
    try:
        with svc.engine.begin() as conn:
            if body.role is not None:
                usermgmt.set_role(conn, p.user, ip, user_id, body.role)
            if body.disabled is not None:
                usermgmt.set_disabled(conn, p.user, ip, user_id, body.disabled)
            if body.grants is not None:
                usermgmt.set_grants(conn, p.user, ip, user_id, list(body.grants))
            if body == UserChange() and accounts.get_user(conn, user_id) is None:
                raise LookupError(user_id)
    except LookupError:
        raise HTTPException(404, "no such user") from None
    except UserError as exc:
        raise HTTPException(409, str(exc)) from None
    return _describe(svc, user_id)


@router.post("/api/v1/users/{user_id}/reset-2fa", tags=["users"])
def reset_2fa(svc: SvcDep, p: FreshAdmin, request: Request, user_id: int) -> dict[str, Any]:
    """Remove the user's authenticator app, passkeys and recovery codes; their sessions end everywhere."""
    try:
        with svc.engine.begin() as conn:
            usermgmt.reset_2fa(
                conn, p.user, client_ip(request), user_id, keep_session=p.session_id if user_id == p.user.id else None
            )
    except LookupError:
        raise HTTPException(404, "no such user") from None
    return _describe(svc, user_id)


@router.get("/api/v1/audit/export", tags=["audit"])
def export_audit(svc: SvcDep, _p: Admin, format: Annotated[Literal["csv", "jsonl"], Query()] = "jsonl") -> StreamingResponse:
    """The whole audit log, oldest first, as CSV (formula-safe, one line per entry) or JSON Lines."""
    if format == "csv":
        body, media = auditlog.export_csv(svc.reader), "text/csv; charset=utf-8"
    else:
        body, media = auditlog.export_jsonl(svc.reader), "application/x-ndjson"
    headers = {"Content-Disposition": f'attachment; filename="pocketnoc-audit.{format}"'}
    return StreamingResponse(body, media_type=media, headers=headers)
