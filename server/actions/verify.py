"""After a run: re-check the device (and the alert) until the problem is gone or time is up."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from agents.base import CollectError
from agents.ssh import clean_text
from server.actions.plan import ssh_target
from server.runtime import Services
from server.store import runs as store

if TYPE_CHECKING:
    from server.actions.runner import LiveRun

PAUSE = 3.0  # seconds between re-checks while the problem persists
VERIFY_COMMAND_TIMEOUT = 30.0
VERIFY_OUTPUT_MAX = 16 * 1024
RAN = ("succeeded", "failed", "timed_out", "capped")


async def verify(svc: Services, live: LiveRun) -> tuple[str, str]:
    """('fixed' | 'failing' | 'unverified' | 'skipped', what was seen)."""
    spec = live.prepared.action.verify
    if not spec.repoll and spec.ssh is None:
        return "skipped", "this action does not verify anything (verify: false)"
    if live.status not in RAN:
        return "skipped", "nothing ran, so there is nothing to verify"
    live.set_verification("checking", "re-checking the device")
    if spec.delay:
        await asyncio.sleep(spec.delay)
    deadline = time.monotonic() + spec.within
    attempt = 0
    while True:
        attempt += 1
        verdict, detail = await _check_once(svc, live)
        if verdict in ("fixed", "unverified") or time.monotonic() >= deadline:
            break
        live.set_verification("checking", f"check {attempt}: {detail}; checking again")
        await asyncio.sleep(max(0.0, min(PAUSE, deadline - time.monotonic())))
    if verdict == "pending":
        verdict = "unverified"
    return verdict, detail


async def _check_once(svc: Services, live: LiveRun) -> tuple[str, str]:
    """One look: the verify command, then a re-poll and the alert's (or the device's) state."""
    p = live.prepared
    good: list[str] = []
    bad: list[str] = []
    notes: list[str] = []
    if p.plan.verify_command:
        command = p.plan.verify_command
        from server.actions.runner import ssh_run

        try:
            target = ssh_target(p.device.row, svc.settings)
            result = await ssh_run(svc, target, command, VERIFY_COMMAND_TIMEOUT, VERIFY_OUTPUT_MAX)
        except (CollectError, ValueError) as exc:
            bad.append(f"the check command could not run: {exc}")
        else:
            said = clean_text(result.stdout or result.stderr, 200).strip().replace("\n", " ")
            if result.exit_code == 0:
                good.append(f"{command} succeeded")
            else:
                bad.append(f"{command} exited {result.exit_code}" + (f": {said}" if said else ""))
    if p.action.verify.repoll:
        polled = await _repoll(svc, live.device_id)
        if polled is None:
            notes.append("polling is not running in this process, so the device was not re-checked")
        elif not polled:
            notes.append("no check of the device could run just now")
            if not bad:
                return "pending", "waiting for the device's checks"
        else:
            await run_in_threadpool(_judge, svc, live, good, bad)
    if bad:
        return "failing", "; ".join(bad)
    if not good:
        return "unverified", "; ".join(notes) or "nothing could be checked"
    return "fixed", "; ".join(good + notes)


async def _repoll(svc: Services, device_id: int) -> bool | None:
    """Poll every check of the device now and wait for the result to be stored; None when polling is off here."""
    if svc.dispatcher is None or svc.writer is None:
        return None
    ran = await svc.dispatcher.run_now(device_id)
    await run_in_threadpool(svc.writer.flush, 15.0)
    return ran > 0


def _judge(svc: Services, live: LiveRun, good: list[str], bad: list[str]) -> None:
    p = live.prepared
    with svc.reader.connect() as conn:
        state, error = store.device_state(conn, live.device_id)
        if p.alert_id is not None:
            alert = store.alert_brief(conn, p.alert_id)
            if alert is None or alert["status"] == "resolved":
                good.append(f"alert #{p.alert_id} resolved")
            elif alert["held"]:  # cleared soon after it fired: it resolves once it has stayed clear (flapping guard)
                good.append(f"alert #{p.alert_id} cleared (it resolves once it has stayed clear)")
            else:
                bad.append(f"alert #{p.alert_id} still firing: {alert['title']}")
            return
        firing = store.firing_titles(conn, live.device_id)
    if state != "up":
        bad.append(f"{p.device.row.name} is {state}" + (f" ({error[:200]})" if error else ""))
    else:
        good.append(f"{p.device.row.name} is up")
    if firing:
        more = f" and {len(firing) - 3} more" if len(firing) > 3 else ""
        bad.append("open alerts: " + "; ".join(firing[:3]) + more)
