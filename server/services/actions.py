"""Action use cases shared by the JSON API and the pages: what a device offers, starting a run, a run as shown."""

from __future__ import annotations

import asyncio

from server.actions.catalog import ActionSpec
from server.actions.gate import Prepared, Refused, RunRequest, audit_refusal, check
from server.actions.plan import why_not
from server.actions.runner import manager
from server.auth.access import Principal
from server.runtime import Services
from server.store import runs as store
from server.store.runs import DeviceInfo, RunDetail


class RunView(RunDetail):
    """A run as shown: as stored, or as it stands while it runs in this process (`finished`: nothing more changes)."""

    finished: bool


def offered(svc: Services, principal: Principal, device: DeviceInfo, rule: str | None = None) -> list[ActionSpec]:
    """The actions that apply to the device and that the caller's role allows (suggested ones first for an alert)."""
    catalog = manager(svc).catalog
    if not principal.user.can("operator"):
        return []
    found = [a for a in catalog.actions.values() if principal.user.can(a.role) and not why_not(a, device)]
    if rule:
        found.sort(key=lambda a: rule not in a.applies_to.rules)
    return found


async def start_run(svc: Services, p: Principal, ip: str, action_id: str, body: RunRequest) -> tuple[int, Prepared]:
    """Check, claim the device, record and start a run; Refused (audited) when it may not run."""
    mgr = manager(svc)
    prepared = await check(svc, mgr.catalog, p, ip, action_id, body)
    claim = mgr.reserve(prepared.device.row.id, exclusive=not prepared.action.concurrent)
    if claim is None:
        holder = mgr.busy(prepared.device.row.id)
        why = f"another action is running on {prepared.device.row.name}" + (f" (run #{holder})" if holder else "")
        why += "; wait until it ends"
        await asyncio.to_thread(audit_refusal, svc, p, ip, action_id, prepared.device.row.name, why, 409, {})
        raise Refused(409, why)
    return await mgr.start(prepared, p, ip, claim), prepared


def run_view(svc: Services, run_id: int) -> RunView | None:
    """A run as stored, overlaid with its live state and output while it runs in this process."""
    live = manager(svc).live.get(run_id)  # first: a run that ends meanwhile is still seen whole
    with svc.reader.connect() as conn:
        data = store.get_run(conn, run_id)
    if data is None:
        return None
    if live is not None:
        output = live.transcript.merged()
        data.update(
            {
                "id": live.id,
                "status": live.status,
                "exit_code": live.exit_code,
                "error": live.error,
                "duration": live.duration,
                "truncated": live.transcript.capped or live.status == "capped",
                "verification": live.verification,
                "verification_detail": live.verification_detail,
                "output": output,
                "stdout": "".join(t for s, t in output if s == "stdout"),
                "stderr": "".join(t for s, t in output if s == "stderr"),
            }
        )  # the fields LiveRun.state() shows
    return RunView(**data, finished=live is None or live.finished)
