"""Alert and silence pages: ack and snooze in one tap from the list, details with history."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from server.auth.access import Operator, Viewer, client_ip
from server.config.inventory import error_message
from server.notify.channel_alarm import channel_alarm
from server.notify.runtime import silent_label
from server.polling import pipeline
from server.runtime import Services, get_services
from server.services.alerts import AlertState, NewSilence, act, create_silence
from server.services.errors import Conflict, ServiceError
from server.store import alerts as store
from server.web.pages.alert_flash import Flash, done_url, flash_for, undo_minutes, without_flash
from server.web.pages.common import TEMPLATES, local_path, render, render_error, user_zone
from server.web.views_phone import alert_value

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
SNOOZE_CHOICES = (("15 min", 15), ("1 h", 60), ("4 h", 240), ("24 h", 1440))


def alert_flash(request: Request) -> Flash | None:
    """The confirmation (and Undo) after an ack or snooze tap, when the page was reached from one (called by base.html)."""
    query = request.query_params
    if "done" not in query or not query.get("alert", "").isdigit():
        return None
    svc: Services = request.app.state.services
    alert_id = int(query["alert"])
    with svc.reader.connect() as conn:
        try:
            alert = store.get_alert(conn, alert_id)
        except store.AlertNotFound:
            return None
    if not _shows(query.get("done", ""), alert.get("acked_by"), alert.get("snoozed_until")):
        return None  # a crafted link must not say an alert was handled when it was not
    title = str(alert["title"])
    back = without_flash(request.url.path, list(query.multi_items()))
    return flash_for({k: query.get(k, "") for k in ("done", "alert", "prev")}, {alert_id: title}, back=back)


def _shows(action: str, acked_by: object, snoozed_until: object) -> bool:
    """The confirmation only where the alert is as it says (acknowledged, snoozed, ...)."""
    snoozed = isinstance(snoozed_until, int | float) and snoozed_until > time.time()
    return {"ack": bool(acked_by), "unack": not acked_by, "snooze": snoozed, "unsnooze": not snoozed}.get(action, True)


TEMPLATES.env.globals["alert_flash"] = alert_flash


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    svc: SvcDep,
    _p: Viewer,
    state: AlertState = "open",
    severity: Literal["", "critical", "warning", "info"] = "",
) -> Response:
    """Open alerts first, with one-tap acknowledge and snooze."""
    with svc.reader.connect() as conn:
        data = store.list_alerts(conn, state, severity, limit=500)
        silent_since = silent_label(svc, conn, user_zone(request)[0])
        failing = channel_alarm(conn).channels
    return render(request, "alerts.html", data=data, state=state, severity=severity, snooze_choices=SNOOZE_CHOICES,
                  silent_since=silent_since, failing_channels=failing)


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(request: Request, svc: SvcDep, _p: Viewer, alert_id: int) -> Response:
    """One alert: what, where, since when, who did what."""
    with svc.reader.connect() as conn:
        try:
            alert = store.get_alert(conn, alert_id)
        except store.AlertNotFound:
            return render_error(request, 404, "No such alert.")
    rules = svc.alerting.rules if svc.alerting else pipeline.load_rules(svc, reread_file=False)
    rule = next((r for r in rules if r.name == alert["rule"]), None)
    value = alert_value(rule, alert["last_value"])
    return render(request, "alert.html", a=alert, value=value, snooze_choices=SNOOZE_CHOICES)


@router.post("/alerts/{alert_id}/{action}")
def alert_action(
    request: Request,
    svc: SvcDep,
    p: Operator,
    alert_id: int,
    action: str,
    note: Annotated[str, Form(max_length=2000)] = "",
    minutes: Annotated[int, Form(ge=0, le=7 * 1440)] = 60,
    back: Annotated[str, Form(max_length=500)] = "",
    of: Annotated[str, Form(max_length=16)] = "",
    until: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """The forms behind the buttons: ack, unack, snooze, unsnooze, note, and the Undo of the first three.

    Answers with the page it came from, saying what was done (and offering Undo) next to the alert's row."""
    if action not in ("ack", "unack", "snooze", "unsnooze", "note", "undo"):
        return render_error(request, 404, "No such action.")
    if action == "note" and not note.strip():
        return render_error(request, 400, "The note is empty.")
    if action == "undo" and of not in ("ack", "snooze", "unsnooze"):
        return render_error(request, 400, "Nothing to undo.")
    prev: float | None = None
    with svc.reader.connect() as conn:
        try:
            prev = store.get_alert(conn, alert_id).get("snoozed_until")
        except store.AlertNotFound:
            return render_error(request, 404, "No such alert.")
    said_note: str | None = None
    for_minutes: int | None
    if action == "unsnooze":
        doing, for_minutes = "snooze", 0
    elif action == "undo":
        doing, for_minutes = ("unack", None) if of == "ack" else ("snooze", undo_minutes(until))
    else:
        doing, said_note, for_minutes = action, note, minutes
    try:
        act(svc, p.user, client_ip(request), alert_id, doing, note=said_note, minutes=for_minutes)
    except Conflict:
        pass  # already in that state (someone else acted first): the page shows the alert as it is
    said = "undone" if action == "undo" else action
    return RedirectResponse(done_url(local_path(back, f"/alerts/{alert_id}"), said, alert_id, prev), status_code=303)


@router.get("/silences", response_class=HTMLResponse)
def silences_page(request: Request, svc: SvcDep, _p: Viewer) -> Response:
    """Maintenance windows, and a form to add one."""
    with svc.reader.connect() as conn:
        items = store.list_silences(conn)
    return render(request, "silences.html", items=items, error=None, form={})


@router.post("/silences")
def silence_create(
    request: Request,
    svc: SvcDep,
    p: Operator,
    scope: Annotated[str, Form(pattern="^(device|tag|everything)$")] = "device",
    target: Annotated[str, Form(max_length=64)] = "",
    comment: Annotated[str, Form(max_length=500)] = "",
    hours: Annotated[float, Form(gt=0, le=24 * 366)] = 1.0,
    weekly: Annotated[str, Form(max_length=8)] = "",
    days: Annotated[list[int] | None, Form()] = None,
    start: Annotated[str, Form(max_length=5)] = "22:00",
    tz: Annotated[str, Form(max_length=64)] = "UTC",
) -> Response:
    """Add a one-off (for N hours from now) or weekly maintenance window."""
    raw: dict[str, object] = {"comment": comment}
    if scope == "everything":
        raw["everything"] = True
    else:
        raw[scope] = target.strip()
    if weekly:
        raw["recurrence"] = {
            "days": days if days is not None else list(range(7)),
            "start": start,
            "minutes": int(hours * 60),
            "tz": tz,
        }
    else:
        raw["duration_minutes"] = max(1, int(hours * 60))
    try:
        body = NewSilence.model_validate(raw)
        create_silence(svc, p.user, client_ip(request), body)
    except (ValidationError, ServiceError) as exc:
        message = "; ".join(error_message(e) for e in exc.errors()) if isinstance(exc, ValidationError) else exc.message
        with svc.reader.connect() as conn:
            items = store.list_silences(conn)
        return render(request, "silences.html", status=400, items=items, error=message, form=raw)
    return RedirectResponse("/silences", status_code=303)


@router.post("/silences/{silence_id}/delete")
def silence_delete(request: Request, svc: SvcDep, p: Operator, silence_id: int) -> Response:
    """End a maintenance window."""
    from server.store import accounts

    with svc.engine.begin() as conn:
        if store.delete_silence(conn, silence_id):
            accounts.write_audit(conn, p.user, "silence.delete", str(silence_id), {}, client_ip(request))
    return RedirectResponse("/silences", status_code=303)
