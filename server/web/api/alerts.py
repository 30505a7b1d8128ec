"""JSON API for alerts (ack, unack, snooze, note), silences (maintenance windows) and rules."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from server.auth.access import Admin, Operator, Viewer, client_ip
from server.config.yamlsrc import ConfigError
from server.polling import pipeline
from server.runtime import Services, get_services
from server.services import alerts as service
from server.services.alerts import MAX_SNOOZE, AlertState, NewSilence, act, create_silence
from server.store import accounts
from server.store import alerts as store
from server.store import traps as stored_traps

router = APIRouter(tags=["alerts"])
SvcDep = Annotated[Services, Depends(get_services)]


class Note(BaseModel):
    """A note (optional on acknowledge)."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class Snooze(BaseModel):
    """How long to snooze, in minutes (0 ends a snooze)."""

    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(ge=0, le=MAX_SNOOZE // 60)
    note: str = Field(default="", max_length=2000)


@router.get("/api/v1/alerts")
def list_alerts(
    svc: SvcDep,
    _p: Viewer,
    state: AlertState = "open",
    severity: Literal["", "critical", "warning", "info"] = "",
    device: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Alerts: open ones first (firing, then acknowledged, snoozed, silenced, suppressed), by severity."""
    with svc.reader.connect() as conn:
        return dict(store.list_alerts(conn, state, severity, device, limit, offset))


@router.get("/api/v1/alerts/{alert_id}")
def get_alert(svc: SvcDep, _p: Viewer, alert_id: int) -> dict[str, Any]:
    """One alert and its history."""
    with svc.reader.connect() as conn:
        try:
            return dict(store.get_alert(conn, alert_id))
        except store.AlertNotFound:
            raise HTTPException(404, "no such alert") from None


@router.post("/api/v1/alerts/{alert_id}/ack")
def ack(svc: SvcDep, p: Operator, request: Request, alert_id: int, body: Note | None = None) -> dict[str, Any]:
    """Acknowledge (stops escalation; the alert still resolves by itself)."""
    return dict(act(svc, p.user, client_ip(request), alert_id, "ack", note=(body.note if body else "")))


@router.post("/api/v1/alerts/{alert_id}/unack")
def unack(svc: SvcDep, p: Operator, request: Request, alert_id: int) -> dict[str, Any]:
    """Take an acknowledgement back."""
    return dict(act(svc, p.user, client_ip(request), alert_id, "unack"))


@router.post("/api/v1/alerts/{alert_id}/snooze")
def snooze(svc: SvcDep, p: Operator, request: Request, alert_id: int, body: Snooze) -> dict[str, Any]:
    """Snooze for a number of minutes (0 ends the snooze)."""
    return dict(act(svc, p.user, client_ip(request), alert_id, "snooze", minutes=body.minutes, note=body.note))


@router.post("/api/v1/alerts/{alert_id}/notes")
def note(svc: SvcDep, p: Operator, request: Request, alert_id: int, body: Note) -> dict[str, Any]:
    """Add a note."""
    return dict(act(svc, p.user, client_ip(request), alert_id, "note", note=body.note))


@router.get("/api/v1/silences", tags=["silences"])
def list_silences(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """Maintenance windows and whether each is in force."""
    with svc.reader.connect() as conn:
        return {"items": store.list_silences(conn)}


@router.post("/api/v1/silences", tags=["silences"], status_code=201)
def add_silence(svc: SvcDep, p: Operator, request: Request, body: NewSilence) -> dict[str, Any]:
    """Silence alerts (polling goes on) for a device, a tag or everything, once or every week."""
    return dict(create_silence(svc, p.user, client_ip(request), body))


@router.delete("/api/v1/silences/{silence_id}", tags=["silences"], status_code=204)
def remove_silence(svc: SvcDep, p: Operator, request: Request, silence_id: int) -> None:
    """End a silence."""
    service.remove_silence(svc, p.user, client_ip(request), silence_id)


@router.get("/api/v1/rules", tags=["rules"])
def list_rules(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """The rules in force (file or built-in defaults, plus rules added through the API)."""
    return {"items": service.list_rules(svc)}


@router.post("/api/v1/rules", tags=["rules"], status_code=201)
def add_rule(svc: SvcDep, p: Admin, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Add a rule (same fields as rules.yaml); names of file or built-in rules are taken."""
    return service.add_rule(svc, p.user, client_ip(request), body)


@router.delete("/api/v1/rules/{name}", tags=["rules"], status_code=204)
def remove_rule(svc: SvcDep, p: Admin, request: Request, name: str) -> None:
    """Remove a rule that was added through the API."""
    service.remove_rule(svc, p.user, client_ip(request), name)


@router.post("/api/v1/rules/reload", tags=["rules"])
def reload(svc: SvcDep, p: Admin, request: Request) -> dict[str, Any]:
    """Re-read the rules file; on errors the rules in force stay and the errors are returned."""
    try:
        count = pipeline.reload_rules(svc)
    except ConfigError as exc:
        raise HTTPException(422, {"errors": exc.problems, "kept": "the previous rules stay in force"}) from None
    with svc.engine.begin() as conn:
        accounts.write_audit(
            conn, p.user, "rule.reload", str(svc.settings.rules_file or "defaults"), {"count": count}, client_ip(request)
        )
    return {"rules": count}


@router.get("/api/v1/traps", tags=["alerts"])
def list_traps(
    svc: SvcDep,
    _p: Viewer,
    device: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Recent SNMP traps, newest first (traps from unknown sources too, unless a device is given)."""
    with svc.reader.connect() as conn:
        items = stored_traps.recent(conn, device, limit)
    receiver = svc.traps
    return {"items": items, "receiver": receiver.counters() if receiver is not None else None}
