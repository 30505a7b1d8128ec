"""SSH host-key enrollment: an admin confirms the key a server offered (trust on first use, by a person)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from server.auth.access import Admin, Viewer, client_ip
from server.runtime import Services, get_services
from server.services import hostkeys as service
from server.store import hostkeys

router = APIRouter(tags=["devices"])
SvcDep = Annotated[Services, Depends(get_services)]


class TrustKey(BaseModel):
    """The fingerprint the admin saw and confirms (it must match what the server offers now)."""

    model_config = ConfigDict(extra="forbid")
    fingerprint: str = Field(min_length=8, max_length=128)


@router.get("/api/v1/devices/{device_id}/host-keys")
def list_host_keys(svc: SvcDep, _p: Viewer, device_id: int) -> dict[str, Any]:
    """Enrolled keys, and the key offered now if it is not trusted."""
    with svc.reader.connect() as conn:
        offered = service.offered_key(conn, device_id)
        items = hostkeys.list_keys(conn, device_id)
    if offered is None:
        return {"items": items, "offered": None}
    shown = {"key_type": offered.key_type, "fingerprint": offered.fingerprint, "problem": offered.problem}
    return {"items": items, "offered": shown}


@router.post("/api/v1/devices/{device_id}/host-keys", status_code=201)
def trust_host_key(svc: SvcDep, p: Admin, request: Request, device_id: int, body: TrustKey) -> dict[str, Any]:
    """Trust the key the server offers now (give its fingerprint as confirmation)."""
    return {"trusted": service.trust_offered(svc, p, client_ip(request), device_id, body.fingerprint)}


@router.delete("/api/v1/devices/{device_id}/host-keys/{key_id}", status_code=204)
def untrust_host_key(svc: SvcDep, p: Admin, request: Request, device_id: int, key_id: int) -> None:
    """Remove an enrolled key (keys pinned in the config file stay)."""
    service.remove(svc, p, client_ip(request), device_id, key_id)
