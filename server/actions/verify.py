"""After a run: re-check the device until the problem is gone, then keep re-checking until the fix has held for the
action's stability window; a fix that fails again inside the window reopens the alert and says when it failed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agents.base import CollectError
from agents.ssh import clean_text
from server.actions.plan import ssh_target
from server.runtime import Services
from server.store import runs as store

if TYPE_CHECKING:
    from server.actions.runner import LiveRun

PAUSE = 3.0  # seconds between re-checks while the problem persists
HOLD_STEP_MAX = 60.0  # at most this long between re-checks while a fix is held
VERIFY_COMMAND_TIMEOUT = 30.0
VERIFY_OUTPUT_MAX = 16 * 1024
RAN = ("succeeded", "failed", "timed_out", "capped")


@dataclass
class Pace:
    """Time as verification sees it: a monotonic clock, the wall clock, and sleep (tests advance all three)."""

    now: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


def held_for(seconds: float) -> str:
    """'2 min', '45 s', '1 h 5 min'."""
    s = round(seconds)
    if s < 90:
        return f"{s} s"
    minutes = round(s / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _clock(ts: float) -> str:
    """ISO UTC, as the API speaks; pages show it in each reader's time zone (the `local_times` filter)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def verify(svc: Services, live: LiveRun, pace: Pace | None = None) -> tuple[str, str]:
    """('fixed' | 'failing' | 'regressed' | 'unverified' | 'skipped', what was seen)."""
    pace = pace or Pace()
    spec = live.prepared.action.verify
    if not spec.repoll and spec.ssh is None:
        return "skipped", "this action does not verify anything (verify: false)"
    if live.status not in RAN:
        return "skipped", "nothing ran, so there is nothing to verify"
    live.set_verification("checking", "re-checking the device")
    if spec.delay:
        await pace.sleep(spec.delay)
    deadline = pace.now() + spec.within
    step = min(max(float(live.prepared.device.row.interval), PAUSE), HOLD_STEP_MAX)
    attempt, good_polls = 0, 0
    fixed_at: float | None = None
    while True:
        attempt += 1
        verdict, detail = await _check_once(svc, live)
        now = pace.now()
        if verdict == "unverified":
            return verdict, detail
        if verdict == "fixed":
            fixed_at = now if fixed_at is None else fixed_at
            good_polls += 1
            held = now - fixed_at
            if good_polls >= spec.hold_polls and held >= spec.hold_seconds:
                if spec.hold_polls <= 1 and spec.hold_seconds <= 0:
                    return "fixed", f"verified: {detail}"
                return "fixed", f"verified — held for {held_for(held)} ({good_polls} checks): {detail}"
            if spec.hold_seconds > 0:  # say only the measure the action asked for (not "2 of 1 checks")
                progress = f"{held_for(held)} of {held_for(spec.hold_seconds)} ({good_polls} checks so far)"
            else:
                progress = f"{good_polls} of {spec.hold_polls} checks"
            live.set_verification("checking", f"fixed; holding: {progress}")
            await pace.sleep(step)
            continue
        if verdict == "failing" and fixed_at is not None:
            when = pace.wall()
            text = f"fixed, then failed again at {_clock(when)} (after {held_for(now - fixed_at)}): {detail}"
            await asyncio.to_thread(_reopen, svc, live, when, text)
            return "regressed", text
        if now >= deadline:
            if verdict == "pending":
                return "unverified", detail
            return "failing", f"not fixed: {detail}"
        live.set_verification("checking", f"check {attempt}: {detail}; checking again")
        await pace.sleep(max(0.0, min(PAUSE, deadline - now)))


def _reopen(svc: Services, live: LiveRun, when: float, text: str) -> None:
    p = live.prepared
    if p.alert_id is None:
        return
    with svc.engine.begin() as conn:
        store.reopen_alert(conn, p.alert_id, when, f"run #{live.id} {p.action.title}: {text}"[:1000])


async def _check_once(svc: Services, live: LiveRun) -> tuple[str, str]:
    """One look: the verify command, then a re-poll and the alert's (or the port's, or the device's) state."""
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
            await asyncio.to_thread(_judge, svc, live, good, bad)
    if bad:
        return "failing", "; ".join(bad)
    if not good:
        return "unverified", "; ".join(notes) or "nothing could be checked"
    return "fixed", "; ".join(good + notes)


async def _repoll(svc: Services, device_id: int) -> bool | None:
    """Poll every check of the device now and wait for the result to be stored; None when polling is off here."""
    from server.services.devices import poll_now  # the services room imports the actions room: not at import time

    done = await poll_now(svc, device_id)
    return None if done is None else done.ran > 0


def _judge(svc: Services, live: LiveRun, good: list[str], bad: list[str]) -> None:
    p = live.prepared
    with svc.reader.connect() as conn:
        state, error = store.device_state(conn, live.device_id)
        if p.alert_id is not None:
            alert = store.alert_brief(conn, p.alert_id)
            again = store.newer_open_alert(conn, alert) if alert is not None else None
            if alert is not None and alert.status != "resolved" and alert.held:
                # cleared soon after it fired: it resolves once it has stayed clear (flapping guard)
                good.append(f"alert #{p.alert_id} cleared (it resolves once it has stayed clear)")
            elif alert is not None and alert.status != "resolved":
                flapping = " and flapping (changing state often)" if alert.flapping else ""
                bad.append(f"alert #{p.alert_id} still firing{flapping}: {alert.title}")
            elif again is not None:
                bad.append(f"it fired again as alert #{again.id}: {again.title}")
            else:
                good.append(f"alert #{p.alert_id} resolved")
            return
        firing = store.firing_titles(conn, live.device_id)
        ports = store.device_info(conn, svc.box, live.device_id)
    port_params = {s.name for s in p.action.params if s.type == "interface"}
    chosen = [c for name, c in p.chosen.items() if name in port_params]
    if chosen and ports is not None:  # a port action without an alert: judge the port, not the whole switch
        found = ports.tables.get("interfaces")
        rows = {r.get("index"): r for r in found if isinstance(r, dict)} if isinstance(found, list) else {}
        for c in chosen:
            row = rows.get(c.value) or {}
            if row.get("oper") == "up":
                good.append(f"{c.name} is up")
            else:
                bad.append(f"{c.name} is {row.get('oper') or 'not seen'}")
        return
    if state != "up":
        bad.append(f"{p.device.row.name} is {state}" + (f" ({error[:200]})" if error else ""))
    else:
        good.append(f"{p.device.row.name} is up")
    if firing:
        more = f" and {len(firing) - 3} more" if len(firing) > 3 else ""
        bad.append("open alerts: " + "; ".join(firing[:3]) + more)

