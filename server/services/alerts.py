"""Alert use cases shared by the JSON API and the pages: ack, unack, snooze, notes, maintenance windows, API rules."""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from server.alerts.rules import Rule
from server.config.inventory import TAG_RE, FieldError, error_list
from server.config.timezones import Weekly
from server.polling import pipeline
from server.runtime import Services
from server.services.errors import Conflict, NotFound, ServiceError
from server.store import accounts
from server.store import alerts as store
from server.store import rules as stored_rules
from server.store.accounts import User
from server.store.alert_records import AlertDetail
from server.store.alert_records import NewSilence as StoredSilence
from server.store.jsontypes import JsonObject


class CreatedSilence(StoredSilence):
    """A maintenance window as created, with its id."""

    id: int

AlertState = Literal["open", "firing", "acknowledged", "snoozed", "silenced", "suppressed", "resolved", "all"]
AlertAction = Literal["ack", "unack", "snooze", "note"]
MAX_SNOOZE = 7 * 86400


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


def act(
    svc: Services, user: User, ip: str, alert_id: int, action: str, note: str | None = None, minutes: int | None = None
) -> AlertDetail:
    """Apply ack/unack/snooze/note and audit it; Conflict when the alert is not in a state that allows it."""
    if action == "note" and not (note or "").strip():
        raise ServiceError("the note is empty", 422)
    kw: JsonObject = {k: v for k, v in (("note", note), ("minutes", minutes)) if v is not None}  # as given, for the audit
    with svc.engine.begin() as conn:
        try:
            if action == "ack":
                done = store.acknowledge(conn, alert_id, user.name, note or "")
            elif action == "unack":
                done = store.unacknowledge(conn, alert_id, user.name)
            elif action == "snooze":
                if minutes is None:
                    raise ServiceError("snoozing needs minutes", 422)
                done = store.snooze(conn, alert_id, user.name, minutes * 60, note or "")
            else:
                store.add_note(conn, alert_id, user.name, note or "")
                done = True
        except store.AlertNotFound:
            raise NotFound("no such alert") from None
        if not done:
            raise Conflict(f"cannot {action} this alert in its current state")
        accounts.write_audit(conn, user, f"alert.{action}", str(alert_id), kw, ip)
        return store.get_alert(conn, alert_id)


def create_silence(svc: Services, user: User, ip: str, body: NewSilence) -> CreatedSilence:
    """Validate the scope and store the window."""
    now = time.time()
    starts = body.starts_at or now
    ends = body.ends_at if body.ends_at is not None else (starts + body.duration_minutes * 60 if body.duration_minutes else None)
    if ends is not None and ends <= starts:
        raise ServiceError("the window ends before it starts", 422)
    with svc.engine.begin() as conn:
        device_id = None
        if body.device is not None:
            device_id = store.device_id_named(conn, body.device)
            if device_id is None:
                raise ServiceError(f"no device named {body.device!r}", 422)
        values: StoredSilence = {
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


def remove_silence(svc: Services, user: User, ip: str, silence_id: int) -> None:
    """End a silence."""
    with svc.engine.begin() as conn:
        if not store.delete_silence(conn, silence_id):
            raise NotFound("no such silence")
        accounts.write_audit(conn, user, "silence.delete", str(silence_id), {}, ip)


def list_rules(svc: Services) -> list[JsonObject]:
    """The rules in force (file or built-in defaults, plus rules added through the API), each with its source."""
    rules = svc.alerting.rules if svc.alerting else pipeline.load_rules(svc, reread_file=False)
    with svc.reader.connect() as conn:
        api_names = stored_rules.names(conn)
    return [{**r.model_dump(by_alias=True), "source": "api" if r.name in api_names else "file"} for r in rules]


class RuleInvalid(ServiceError):
    """A rule body that does not validate; `errors` lists why, field by field."""

    status = 422

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("the rule is not valid", detail=errors)
        self.errors = errors


def add_rule(svc: Services, user: User, ip: str, body: JsonObject) -> JsonObject:
    """Add a rule (same fields as rules.yaml); names of file or built-in rules are taken."""
    try:
        rule = Rule.model_validate(body)
    except ValidationError as exc:
        raise RuleInvalid(error_list(exc.errors())) from None
    if any(r.name == rule.name for r in pipeline.load_rules(svc, reread_file=False)):
        raise Conflict(f"a rule named {rule.name!r} exists")
    with svc.engine.begin() as conn:
        stored_rules.add(conn, rule.name, rule.model_dump(by_alias=True), user.name, time.time())
        accounts.write_audit(conn, user, "rule.create", rule.name, {"expr": rule.expr}, ip)
    pipeline.reload_rules(svc, reread_file=False)
    return rule.model_dump(by_alias=True)


def remove_rule(svc: Services, user: User, ip: str, name: str) -> None:
    """Remove a rule that was added through the API."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,63}", name):
        raise NotFound("no such API rule")
    with svc.engine.begin() as conn:
        if not stored_rules.remove(conn, name):
            raise NotFound("no such API rule (rules from the file are changed in the file)")
        accounts.write_audit(conn, user, "rule.delete", name, {}, ip)
    pipeline.reload_rules(svc, reread_file=False)
