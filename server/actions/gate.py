"""Who may run which action on which device, with what parameters: every refusal is explained and audited."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from server.actions.catalog import ActionSpec, Catalog
from server.actions.params import ParamError, check_params, shown
from server.actions.plan import Plan, build_plan, targets_of, why_not
from server.actions.targets import Choice
from server.actions.template import ParamValue
from server.auth.access import Principal
from server.auth.stepup import StepUpRequired, is_fresh
from server.runtime import Services
from server.store import accounts, device_views
from server.store import runs as store
from server.store.runs import AlertBrief, DeviceInfo

REASON_MIN = 4
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class RunRequest(BaseModel):
    """A run: a catalog id (in the path) and these fields only; a command or a host is never accepted."""

    model_config = ConfigDict(extra="forbid")
    device: int = Field(ge=1, le=2**31 - 1)
    params: dict[str, StrictStr | StrictInt] = Field(default_factory=dict, max_length=20)
    reason: str = Field(default="", max_length=500)
    confirm: str | None = Field(default=None, max_length=200, description="The device name, typed (dangerous actions).")
    alert: int | None = Field(default=None, ge=1, le=2**31 - 1, description="The alert this run answers.")
    expected: str | None = Field(default=None, max_length=64, description="The preview's digest; refused if it changed.")


class Refused(Exception):
    """A run request that is not allowed or not valid; status is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Prepared:
    """A checked request: what will run, where, by whom and why."""

    action: ActionSpec
    device: DeviceInfo
    values: dict[str, ParamValue]
    plan: Plan
    reason: str
    alert_id: int | None
    alert_title: str | None
    chosen: dict[str, Choice]  # parameter -> the thing on the device it names

    @property
    def dangerous_targets(self) -> list[Choice]:
        """Chosen things that are dangerous to touch (the management port, the uplink)."""
        return [c for c in self.chosen.values() if c.danger]

    @property
    def needs_confirmation(self) -> bool:
        """A dangerous action, or a dangerous target: the device name must be typed."""
        return self.action.dangerous or bool(self.dangerous_targets)


def clean_reason(text: str) -> str:
    """A reason as one safe line."""
    return " ".join(_CONTROLS.sub(" ", text).split())[:500]


def audit_refusal(
    svc: Services, principal: Principal, ip: str, action_id: str, device: str, why: str, status: int, extra: Mapping[str, object]
) -> None:
    """One audit entry for a refused attempt (blocking: call from a thread)."""
    detail = {"action": shown(action_id, 64), "device": device, "why": why[:500], "status": status, **extra}
    with svc.engine.begin() as conn:
        accounts.write_audit(conn, principal.user, "action.refused", f"{action_id[:64]}@{device}"[:256], detail, ip)


def _name_of(svc: Services, device_id: int) -> str | None:
    with svc.reader.connect() as conn:
        return device_views.name_of(conn, device_id)


def _load(svc: Services, device_id: int, alert_id: int | None) -> tuple[DeviceInfo | None, AlertBrief | None]:
    with svc.reader.connect() as conn:
        info = store.device_info(conn, svc.box, device_id)
        alert = store.alert_brief(conn, alert_id) if alert_id is not None else None
    return info, alert


def _plan(action: ActionSpec, device: DeviceInfo, body: RunRequest, alert: AlertBrief | None, run: bool) -> Prepared:
    if body.alert is not None and (alert is None or alert.device_id != device.row.id):
        raise Refused(404, f"alert {body.alert} is not an alert of {device.row.name}")
    problem = why_not(action, device)
    if problem:
        raise Refused(422, problem)
    if action.kind == "ssh" and device.host_key_changed:
        raise Refused(
            409,
            f"the SSH host key of {device.row.name} changed since it was pinned: nothing runs there until an admin "
            "reviews the key on the device page",
        )
    targets = targets_of(device, action)
    try:
        values = check_params(action, body.params, targets)
        chosen: dict[str, Choice] = {}
        for name, options in targets.items():
            for c in options:
                if c.value == values.get(name):
                    chosen[name] = c
        plan = build_plan(action, values, chosen)
    except (ParamError, ValueError) as exc:
        raise Refused(422, f"parameters refused: {exc}") from None
    reason = clean_reason(body.reason)
    risky = [c for c in chosen.values() if c.danger]
    if risky and run and body.confirm != device.row.name:
        what = "; ".join(f"{c.name}: {c.danger}" for c in risky)
        raise Refused(422, f"{what}. Type the device name {device.row.name} to confirm")
    if action.dangerous and run:
        if body.confirm != device.row.name:
            raise Refused(422, f"{action.title} is dangerous: type the device name {device.row.name} to confirm")
        if len(reason) < REASON_MIN:
            raise Refused(422, f"{action.title} is dangerous: say why you run it (a reason of at least {REASON_MIN} characters)")
    return Prepared(action, device, values, plan, reason, body.alert, alert.title if alert else None, chosen)


async def check(
    svc: Services, catalog: Catalog, principal: Principal, ip: str, action_id: str, body: RunRequest, run: bool = True
) -> Prepared:
    """The prepared run, or Refused (or StepUpRequired) after an audit entry that says why.

    With run=False (a preview) confirmation, reason and step-up are not asked for and nothing is audited.
    """
    device_label = f"device {body.device}"
    try:
        if not principal.user.can("operator"):
            raise Refused(403, "viewers cannot run actions; ask an operator")
        action = catalog.get(action_id)
        if action is None:
            raise Refused(404, f"no action {shown(action_id, 64)} in the catalog")
        if not principal.user.can(action.role):
            raise Refused(403, f"{action.id} needs the {action.role} role")
        device, alert = await asyncio.to_thread(_load, svc, body.device, body.alert)
        if device is None:
            raise Refused(404, f"no device with id {body.device}")
        device_label = device.row.name
        prepared = _plan(action, device, body, alert, run)
        if run and action.dangerous and not is_fresh(principal, svc.settings):
            raise StepUpRequired()
        if run and body.expected is not None and body.expected != prepared.plan.digest:
            raise Refused(409, "the command differs from the one shown: look at the preview again before running it")
        return prepared
    except (Refused, StepUpRequired) as exc:
        if not run:
            raise
        status = exc.status if isinstance(exc, Refused) else 403
        why = exc.message if isinstance(exc, Refused) else "a fresh second factor is needed for a dangerous action"
        params = {shown(k, 32): shown(v, 80) for k, v in list(body.params.items())[:20]}
        extra = {"params": params, "reason": shown(body.reason, 200)}
        if device_label == f"device {body.device}":  # refused before the device was looked at: name it in the log
            named = await asyncio.to_thread(_name_of, svc, body.device)
            device_label = named or device_label
        await asyncio.to_thread(audit_refusal, svc, principal, ip, action_id, device_label, why, status, extra)
        raise


async def refuse_body(svc: Services, principal: Principal, ip: str, action_id: str, why: str) -> Refused:
    """Audit a malformed run request (extra fields, wrong types) and return the Refused to raise."""
    await asyncio.to_thread(audit_refusal, svc, principal, ip, action_id, "-", why, 422, {})
    return Refused(422, why)
