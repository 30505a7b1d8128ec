"""JSON API for alerts (ack, unack, snooze, note), silences (maintenance windows) and rules."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, insert, select

from server.alerts.rules import Rule
from server.auth.access import Admin, Operator, Viewer, client_ip
from server.config.inventory import TAG_RE, error_list
from server.config.timezones import Weekly
from server.config.yamlsrc import ConfigError
from server.polling import pipeline
from server.runtime import Services, get_services
from server.store import accounts
from server.store import alerts as store
from server.store.accounts import User
from server.store.schema import alert_rules, devices

router = APIRouter(tags=["alerts"])
SvcDep = Annotated[Services, Depends(get_services)]
AlertState = Literal["open", "firing", "acknowledged", "snoozed", "silenced", "suppressed", "resolved", "all"]
MAX_SNOOZE = 7 * 86400


class Note(BaseModel):
    """A note (optional on acknowledge)."""

    model_config = ConfigDict(extra="forbid")
    note: str = Field(default="", max_length=2000)


class Snooze(BaseModel):
    """How long to snooze, in minutes (0 ends a snooze)."""

    model_config = ConfigDict(extra="forbid")
    minutes: int = Field(ge=0, le=MAX_SNOOZE // 60)
    note: str = Field(default="", max_length=2000)


class Recurrence(Weekly):
    """A weekly window: on these days (0 = Monday), from start (HH:MM, in tz) for minutes."""

    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    minutes: int = Field(ge=1, le=7 * 1440)


class NewSilence(BaseModel):
    """A maintenance window by device, tag (a site is a tag) or everything; one-off or recurring."""

    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=500)
    device: str | None = Field(default=None, max_length=64)
    tag: str | None = Field(default=None, pattern=TAG_RE)
    everything: bool = False
    starts_at: float | None = None
    ends_at: float | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=366 * 1440)
    recurrence: Recurrence | None = None

    @model_validator(mode="after")
    def _scope(self) -> NewSilence:
        if sum([self.device is not None, self.tag is not None, self.everything]) != 1:
            raise ValueError("give exactly one of device, tag or everything: true")
        if self.ends_at is not None and self.duration_minutes is not None:
            raise ValueError("give ends_at or duration_minutes, not both")
        if self.recurrence is None and self.ends_at is None and self.duration_minutes is None:
            raise ValueError("a one-off silence needs ends_at or duration_minutes")
        return self


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
        return store.list_alerts(conn, state, severity, device, limit, offset)


@router.get("/api/v1/alerts/{alert_id}")
def get_alert(svc: SvcDep, _p: Viewer, alert_id: int) -> dict[str, Any]:
    """One alert and its history."""
    with svc.reader.connect() as conn:
        try:
            return store.get_alert(conn, alert_id)
        except store.AlertNotFound:
            raise HTTPException(404, "no such alert") from None


def act(svc: Services, user: User, ip: str, alert_id: int, action: str, **kw: Any) -> dict[str, Any]:
    """Apply ack/unack/snooze/note and audit it; 409 when the alert is not in a state that allows it."""
    with svc.engine.begin() as conn:
        try:
            if action == "ack":
                done = store.acknowledge(conn, alert_id, user.name, kw.get("note", ""))
            elif action == "unack":
                done = store.unacknowledge(conn, alert_id, user.name)
            elif action == "snooze":
                done = store.snooze(conn, alert_id, user.name, kw["minutes"] * 60, kw.get("note", ""))
            else:
                store.add_note(conn, alert_id, user.name, kw["note"])
                done = True
        except store.AlertNotFound:
            raise HTTPException(404, "no such alert") from None
        if not done:
            raise HTTPException(409, f"cannot {action} this alert in its current state")
        accounts.write_audit(conn, user, f"alert.{action}", str(alert_id), kw, ip)
        return store.get_alert(conn, alert_id)


@router.post("/api/v1/alerts/{alert_id}/ack")
def ack(svc: SvcDep, p: Operator, request: Request, alert_id: int, body: Note | None = None) -> dict[str, Any]:
    """Acknowledge (stops escalation; the alert still resolves by itself)."""
    return act(svc, p.user, client_ip(request), alert_id, "ack", note=(body.note if body else ""))


@router.post("/api/v1/alerts/{alert_id}/unack")
def unack(svc: SvcDep, p: Operator, request: Request, alert_id: int) -> dict[str, Any]:
    """Take an acknowledgement back."""
    return act(svc, p.user, client_ip(request), alert_id, "unack")


@router.post("/api/v1/alerts/{alert_id}/snooze")
def snooze(svc: SvcDep, p: Operator, request: Request, alert_id: int, body: Snooze) -> dict[str, Any]:
    """Snooze for a number of minutes (0 ends the snooze)."""
    return act(svc, p.user, client_ip(request), alert_id, "snooze", minutes=body.minutes, note=body.note)


@router.post("/api/v1/alerts/{alert_id}/notes")
def note(svc: SvcDep, p: Operator, request: Request, alert_id: int, body: Note) -> dict[str, Any]:
    """Add a note."""
    if not body.note.strip():
        raise HTTPException(422, "the note is empty")
    return act(svc, p.user, client_ip(request), alert_id, "note", note=body.note)


@router.get("/api/v1/silences", tags=["silences"])
def list_silences(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """Maintenance windows and whether each is in force."""
    with svc.reader.connect() as conn:
        return {"items": store.list_silences(conn)}


def create_silence(svc: Services, user: User, ip: str, body: NewSilence) -> dict[str, Any]:
    """Validate the scope and store the window."""
    now = time.time()
    starts = body.starts_at or now
    ends = body.ends_at if body.ends_at is not None else (starts + body.duration_minutes * 60 if body.duration_minutes else None)
    if ends is not None and ends <= starts:
        raise HTTPException(422, "the window ends before it starts")
    with svc.engine.begin() as conn:
        device_id = None
        if body.device is not None:
            device_id = conn.execute(select(devices.c.id).where(devices.c.name == body.device)).scalar()
            if device_id is None:
                raise HTTPException(422, f"no device named {body.device!r}")
        values = {
            "comment": body.comment,
            "device_id": device_id,
            "tag": body.tag,
            "everything": body.everything,
            "starts_at": starts,
            "ends_at": ends,
            "recurrence": body.recurrence.model_dump() if body.recurrence else None,
        }
        silence_id = store.create_silence(conn, values, user.name)
        accounts.write_audit(conn, user, "silence.create", str(silence_id), body.model_dump(), ip)
    return {"id": silence_id, **values}


@router.post("/api/v1/silences", tags=["silences"], status_code=201)
def add_silence(svc: SvcDep, p: Operator, request: Request, body: NewSilence) -> dict[str, Any]:
    """Silence alerts (polling goes on) for a device, a tag or everything, once or every week."""
    return create_silence(svc, p.user, client_ip(request), body)


@router.delete("/api/v1/silences/{silence_id}", tags=["silences"], status_code=204)
def remove_silence(svc: SvcDep, p: Operator, request: Request, silence_id: int) -> None:
    """End a silence."""
    with svc.engine.begin() as conn:
        if not store.delete_silence(conn, silence_id):
            raise HTTPException(404, "no such silence")
        accounts.write_audit(conn, p.user, "silence.delete", str(silence_id), {}, client_ip(request))


@router.get("/api/v1/rules", tags=["rules"])
def list_rules(svc: SvcDep, _p: Viewer) -> dict[str, Any]:
    """The rules in force (file or built-in defaults, plus rules added through the API)."""
    rules = svc.alerting.rules if svc.alerting else pipeline.load_rules(svc, reread_file=False)
    with svc.reader.connect() as conn:
        api_names = set(conn.execute(select(alert_rules.c.name)).scalars())
    return {"items": [{**r.model_dump(by_alias=True), "source": "api" if r.name in api_names else "file"} for r in rules]}


@router.post("/api/v1/rules", tags=["rules"], status_code=201)
def add_rule(svc: SvcDep, p: Admin, request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Add a rule (same fields as rules.yaml); names of file or built-in rules are taken."""
    try:
        rule = Rule.model_validate(body)
    except ValidationError as exc:
        raise HTTPException(422, error_list(exc.errors())) from None
    if any(r.name == rule.name for r in pipeline.load_rules(svc, reread_file=False)):
        raise HTTPException(409, f"a rule named {rule.name!r} exists")
    with svc.engine.begin() as conn:
        conn.execute(
            insert(alert_rules).values(
                name=rule.name, definition=rule.model_dump(by_alias=True), created_by=p.user.name, updated_at=time.time()
            )
        )
        accounts.write_audit(conn, p.user, "rule.create", rule.name, {"expr": rule.expr}, client_ip(request))
    pipeline.reload_rules(svc, reread_file=False)
    return rule.model_dump(by_alias=True)


@router.delete("/api/v1/rules/{name}", tags=["rules"], status_code=204)
def remove_rule(svc: SvcDep, p: Admin, request: Request, name: str) -> None:
    """Remove a rule that was added through the API."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name):
        raise HTTPException(404, "no such API rule")
    with svc.engine.begin() as conn:
        if not conn.execute(delete(alert_rules).where(alert_rules.c.name == name)).rowcount:
            raise HTTPException(404, "no such API rule (rules from the file are changed in the file)")
        accounts.write_audit(conn, p.user, "rule.delete", name, {}, client_ip(request))
    pipeline.reload_rules(svc, reread_file=False)


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
    from server.alerts.traps import recent_traps

    with svc.reader.connect() as conn:
        items = recent_traps(conn, device, limit)
    receiver = svc.traps
    return {"items": items, "receiver": receiver.counters() if receiver is not None else None}
