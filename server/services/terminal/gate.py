"""Who may open a terminal on which device: the role, the `terminal` grant, a pinned unchanged host key, step-up.

Every refusal of an attempt is audited as terminal.refused with why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from agents.base import Target
from server.actions.plan import ssh_target
from server.auth.grants import has_grant, holds
from server.auth.principal import Principal
from server.auth.stepup import StepUpRequired, is_fresh
from server.runtime import Services
from server.services.errors import ServiceError
from server.store import accounts, sessions
from server.store import grants as grants_store
from server.store import runs as devices_store
from server.store.runs import AlertBrief, DeviceInfo

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
REASON_MIN = 4


class TerminalRefused(ServiceError):
    """A terminal that may not be opened (or opened no more): the message says why; `device` names it when known."""

    status = 403
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Allowed:
    """A checked request to open a terminal: where, as whom, and why."""

    device_id: int
    device_name: str
    target: Target
    reason: str
    alert_id: int | None


def clean_reason(text: str) -> str:
    """A reason as one safe line."""
    return " ".join(_CONTROLS.sub(" ", text).split())[:500]


def _why_not(svc: Services, principal: Principal, device_id: int, alert_id: int | None) -> Allowed:
    """The device name and the allowed target, or raise TerminalRefused (StepUpRequired is raised by the caller)."""
    if not principal.can("operator"):
        raise TerminalRefused("viewers cannot open a terminal")
    with svc.reader.connect() as conn:
        device = devices_store.device_info(conn, svc.box, device_id)
        alert = devices_store.alert_brief(conn, alert_id) if alert_id is not None else None
    if device is None:
        raise TerminalRefused(f"no device with id {device_id}", 404)
    name = device.row.name
    try:
        if not has_grant(principal, "terminal"):
            raise TerminalRefused("opening a terminal needs the terminal permission; an admin can grant it on the users page")
        return _device_checks(svc, device, name, alert_id, alert)
    except TerminalRefused as exc:
        exc.device = name
        raise


def _device_checks(svc: Services, device: DeviceInfo, name: str, alert_id: int | None, alert: AlertBrief | None) -> Allowed:
    device_id = device.row.id
    if alert_id is not None and (alert is None or alert.device_id != device_id):
        raise TerminalRefused(f"alert {alert_id} is not an alert of {name}", 404)
    try:
        target = ssh_target(device.row, svc.settings)
    except ValueError:
        raise TerminalRefused(f"{name} has no SSH access configured", 422) from None
    if target.ssh is None or not target.ssh.host_keys:
        raise TerminalRefused(
            f"no SSH host key is pinned for {name}: a terminal never trusts a key on first use; an admin must confirm "
            "the key on the device page first",
            409,
        )
    if device.host_key_changed:
        raise TerminalRefused(
            f"the SSH host key of {name} changed since it was pinned: no terminal opens until an admin reviews the key "
            "on the device page",
            409,
        )
    return Allowed(device_id, name, target, "", alert_id)


def audit_refusal(svc: Services, principal: Principal, ip: str, device: str, why: str, status: int) -> None:
    """One audit entry for a refused attempt (blocking: call from a thread)."""
    with svc.engine.begin() as conn:
        accounts.write_audit(conn, principal.user, "terminal.refused", device[:256], {"why": why[:500], "status": status}, ip)


def check(
    svc: Services, principal: Principal, ip: str, device_id: int, reason: str, alert_id: int | None, audit: bool = True
) -> Allowed:
    """The allowed terminal, or TerminalRefused / StepUpRequired after an audit entry (blocking: call from a thread)."""
    label = f"device {device_id}"
    try:
        allowed = _why_not(svc, principal, device_id, alert_id)
        label = allowed.device_name
        why = clean_reason(reason)
        if alert_id is None and len(why) < REASON_MIN:
            raise TerminalRefused(f"say why you open a terminal (a reason of at least {REASON_MIN} characters)", 422)
        if not is_fresh(principal, svc.settings):
            raise StepUpRequired()
        return Allowed(allowed.device_id, allowed.device_name, allowed.target, why, alert_id)
    except TerminalRefused as exc:
        if audit:
            audit_refusal(svc, principal, ip, exc.device or label, exc.message, exc.status)
        raise
    except StepUpRequired:
        if audit:
            audit_refusal(svc, principal, ip, label, "a fresh second factor is needed to open a terminal", 403)
        raise


def still_held(svc: Services, principal: Principal) -> str | None:
    """None while whoever opened a terminal may keep it open; else why it ends: "signed out" (the session ended, timed
    out, or the user was disabled) or "permission revoked" (the grant taken back, or the user demoted)."""
    s = svc.settings
    with svc.reader.connect() as conn:
        if principal.session_id is not None:
            touches = svc.storage.session_touches if svc.storage is not None else None
            if not sessions.alive(conn, principal.session_id, s.session_idle_minutes * 60, s.session_max_hours * 3600,
                                  touches):  # fmt: skip
                return "signed out"
        user = accounts.get_user(conn, principal.user_id)
        if user is None or user.disabled:
            return "signed out"
        stored = grants_store.of_user(conn, user.id)
    return None if holds(user.role, stored, "terminal") else "permission revoked"


def may_offer(svc: Services, principal: Principal, device_id: int) -> str | None:
    """None when the device page may offer a terminal to this caller, else why not (no audit)."""
    try:
        _why_not(svc, principal, device_id, None)
    except TerminalRefused as exc:
        return exc.message
    return None
