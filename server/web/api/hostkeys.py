"""SSH host-key enrollment: an admin confirms the key a server offered (trust on first use, by a person)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection, select

from server.auth.access import Admin, Principal, Viewer, client_ip
from server.polling import pipeline
from server.runtime import Services, get_services
from server.store import accounts, hostkeys
from server.store.schema import device_status, devices

router = APIRouter(tags=["devices"])
SvcDep = Annotated[Services, Depends(get_services)]


class TrustKey(BaseModel):
    """The fingerprint the admin saw and confirms (it must match what the server offers now)."""

    model_config = ConfigDict(extra="forbid")
    fingerprint: str = Field(min_length=8, max_length=128)


def offered_key(conn: Connection, device_id: int) -> dict[str, Any] | None:
    """The host key the device's SSH server last offered that is not trusted, if any."""
    row = conn.execute(
        select(devices.c.name, device_status.c.facts)
        .join(device_status, device_status.c.device_id == devices.c.id)
        .where(devices.c.id == device_id)
    ).first()
    if row is None:
        raise HTTPException(404, "no such device")
    facts = row.facts or {}
    if not facts.get("ssh_host_key_offered") or not facts.get("ssh_host_key_problem"):
        return None
    return {
        "key_line": str(facts["ssh_host_key_offered"]),
        "key_type": str(facts["ssh_host_key_offered"]).split()[0],
        "fingerprint": str(facts.get("ssh_host_key_fingerprint") or ""),
        "problem": str(facts["ssh_host_key_problem"]),
    }


@router.get("/api/v1/devices/{device_id}/host-keys")
def list_host_keys(svc: SvcDep, _p: Viewer, device_id: int) -> dict[str, Any]:
    """Enrolled keys, and the key offered now if it is not trusted."""
    with svc.reader.connect() as conn:
        offered = offered_key(conn, device_id)
        items = hostkeys.list_keys(conn, device_id)
    if offered:
        offered.pop("key_line")
    return {"items": items, "offered": offered}


def trust_offered(svc: Services, p: Principal, ip: str, device_id: int, fingerprint: str) -> dict[str, Any]:
    """Pin the offered key if its fingerprint is the one the admin confirmed."""
    with svc.engine.begin() as conn:
        offered = offered_key(conn, device_id)
        if offered is None:
            raise HTTPException(409, "this device's SSH server has not offered an untrusted key")
        if offered["fingerprint"] != fingerprint.strip():
            raise HTTPException(409, "the offered key changed since you looked; check it again")
        name = conn.execute(select(devices.c.name).where(devices.c.id == device_id)).scalar()
        hostkeys.trust(conn, device_id, offered["key_line"], offered["fingerprint"], p.user.name)
        accounts.write_audit(
            conn,
            p.user,
            "ssh.host_key.trust",
            str(name),
            {"fingerprint": offered["fingerprint"], "was": offered["problem"]},
            ip,
        )
    pipeline.reschedule(svc)
    return {"trusted": offered["fingerprint"]}


@router.post("/api/v1/devices/{device_id}/host-keys", status_code=201)
def trust_host_key(svc: SvcDep, p: Admin, request: Request, device_id: int, body: TrustKey) -> dict[str, Any]:
    """Trust the key the server offers now (give its fingerprint as confirmation)."""
    return trust_offered(svc, p, client_ip(request), device_id, body.fingerprint)


@router.delete("/api/v1/devices/{device_id}/host-keys/{key_id}", status_code=204)
def untrust_host_key(svc: SvcDep, p: Admin, request: Request, device_id: int, key_id: int) -> None:
    """Remove an enrolled key (keys pinned in the config file stay)."""
    with svc.engine.begin() as conn:
        if not hostkeys.remove(conn, device_id, key_id):
            raise HTTPException(404, "no such key on that device")
        accounts.write_audit(conn, p.user, "ssh.host_key.remove", str(device_id), {"key_id": key_id}, client_ip(request))
    pipeline.reschedule(svc)
