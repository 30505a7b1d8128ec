"""Runs prepared actions in the background: SSH commands on the pinned host, SNMP SETs, live output, history."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agents.base import CollectError, Target
from agents.snmp_client import SnmpClient
from agents.ssh import STDOUT_MAX, CommandResult, HostKeyMismatch, HostKeyUnknown, SshCollector, run_command
from agents.ssh_conn import OutputSink
from server.actions.catalog import Catalog, load_catalog
from server.actions.gate import Prepared
from server.actions.output import Transcript, excerpt
from server.actions.plan import SetStep, snmp_write_target, ssh_target
from server.actions.verify import Pace
from server.auth.access import Principal
from server.runtime import Services
from server.store import accounts
from server.store import runs as store

log = logging.getLogger("pocketnoc.actions")
VERDICT_WORDS = {"fixed": "verified", "failing": "not fixed", "regressed": "fixed, then failed again"}
CONNECT_ALLOWANCE = 60.0  # on top of an action's timeout: connecting and signing in


@dataclass
class LiveRun:
    """A run in progress in this process: its transcript and outcome so far."""

    id: int
    device_id: int
    prepared: Prepared
    user: accounts.User
    ip: str
    transcript: Transcript = field(default_factory=Transcript)
    status: str = "running"
    exit_code: int | None = None
    error: str | None = None
    duration: float | None = None
    verification: str | None = None
    verification_detail: str = ""
    finished: bool = False  # ran and verified: nothing more will change

    def state(self) -> dict[str, Any]:
        """Status fields as the API and the live stream show them."""
        return {
            "id": self.id,
            "status": self.status,
            "exit_code": self.exit_code,
            "error": self.error,
            "duration": self.duration,
            "truncated": self.transcript.capped or self.status == "capped",
            "verification": self.verification,
            "verification_detail": self.verification_detail,
            "finished": self.finished,
        }

    def set_verification(self, verdict: str, detail: str) -> None:
        """Show verification progress to live viewers."""
        self.verification, self.verification_detail = verdict, detail
        self.transcript.touch()


class RunManager:
    """The catalog in force and the runs of this process (one at a time per device unless an action allows more)."""

    def __init__(self, svc: Services, catalog: Catalog) -> None:
        self.svc = svc
        self.catalog = catalog
        self.live: dict[int, LiveRun] = {}
        self._exclusive: dict[int, int] = {}  # device id -> run id holding it
        self._running: dict[int, set[int]] = {}  # device id -> run ids (any kind)
        self._tasks: set[asyncio.Task[None]] = set()
        self._claims = 0  # claims are negative numbers, run ids positive
        self.pace = Pace()  # verification's clocks and sleep (tests put a clock they advance here)

    def busy(self, device_id: int) -> int | None:
        """The run holding the device exclusively (0 while its claim is being recorded), or None."""
        holder = self._exclusive.get(device_id)
        return None if holder is None else max(holder, 0)

    def reserve(self, device_id: int, exclusive: bool) -> int | None:
        """Claim the device for a new run, or None if an exclusive run holds it and this one is exclusive too.

        Synchronous, so nothing can start between the check and the claim; `concurrent: true` actions never wait.
        """
        if exclusive and device_id in self._exclusive:
            return None
        self._claims -= 1
        claim = self._claims
        self._running.setdefault(device_id, set()).add(claim)
        if exclusive:
            self._exclusive[device_id] = claim
        return claim

    def _bind(self, device_id: int, claim: int, run_id: int) -> None:
        ids = self._running.setdefault(device_id, set())
        ids.discard(claim)
        ids.add(run_id)
        if self._exclusive.get(device_id) == claim:
            self._exclusive[device_id] = run_id

    def release(self, device_id: int, run_id: int) -> None:
        """Free the device from one run (or from a claim that never became a run)."""
        ids = self._running.get(device_id, set())
        ids.discard(run_id)
        if not ids:
            self._running.pop(device_id, None)
        if self._exclusive.get(device_id) == run_id:
            del self._exclusive[device_id]

    async def start(self, prepared: Prepared, principal: Principal, ip: str, claim: int) -> int:
        """Record the run, audit it, and start it in the background (under a claim from reserve); returns the run id."""
        p, device_id = prepared, prepared.device.row.id
        try:
            run_id = await asyncio.to_thread(self._record_start, p, principal, ip)
        except BaseException:
            self.release(device_id, claim)
            raise
        self._bind(device_id, claim, run_id)
        live = LiveRun(run_id, device_id, p, principal.user, ip)
        self.live[run_id] = live
        task = asyncio.create_task(self._execute(live), name=f"action-run-{run_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id

    def _record_start(self, p: Prepared, principal: Principal, ip: str) -> int:
        row = p.device.row
        with self.svc.engine.begin() as conn:
            run_id = store.create_run(
                conn,
                {
                    "action_id": p.action.id,
                    "title": p.action.title,
                    "kind": p.action.kind,
                    "danger": p.action.danger,
                    "device_id": row.id,
                    "device_name": row.name,
                    "alert_id": p.alert_id,
                    "user_id": principal.user.id,
                    "username": principal.user.name,
                    "reason": p.reason,
                    "params": dict(p.values),
                    "command": p.plan.text,
                },
            )
            detail = {
                "run": run_id,
                "action": p.action.id,
                "danger": p.action.danger,
                "device": row.name,
                "address": row.address,
                "alert": p.alert_id,
                "params": dict(p.values),
                "command": p.plan.text,
                "reason": p.reason,
            }
            accounts.write_audit(conn, principal.user, "action.run", f"{p.action.id}@{row.name}", detail, ip)
            if p.alert_id is not None:
                why = f": {p.reason}" if p.reason else ""
                store.note_on_alert(conn, p.alert_id, principal.user.name, f"ran {p.action.title} (run #{run_id}){why}")
        return run_id

    async def _execute(self, live: LiveRun) -> None:
        from server.actions.verify import verify

        p = live.prepared
        start = time.monotonic()
        try:
            try:
                budget = p.action.timeout + CONNECT_ALLOWANCE
                if p.action.kind == "ssh":
                    await asyncio.wait_for(self._run_ssh(live), budget)
                else:
                    await asyncio.wait_for(self._run_snmp(live), budget)
            except TimeoutError:
                live.status, live.error = "timed_out", f"no result within {budget:g} s; stopped"
            except asyncio.CancelledError:
                live.status, live.error = "interrupted", "the server stopped while this ran; its outcome is unknown"
                raise
            except Exception as exc:  # a bug here must still end the run visibly
                log.exception("action run %d crashed", live.id)
                live.status, live.error = "error", f"internal error ({exc.__class__.__name__}); see the server log"
            finally:
                live.transcript.close()
                live.duration = round(time.monotonic() - start, 3)
                await asyncio.shield(asyncio.to_thread(self._record_end, live))
                self.release(live.device_id, live.id)
                live.transcript.touch()
            verdict, detail = await verify(self.svc, live, self.pace)
        except asyncio.CancelledError:
            verdict, detail = "unverified", "the server stopped before the fix was verified"
            await asyncio.shield(asyncio.to_thread(self._record_verdict, live, verdict, detail))
            self._done(live, verdict, detail)
            raise
        except Exception as exc:
            log.exception("verifying action run %d crashed", live.id)
            verdict, detail = "unverified", f"verification failed ({exc.__class__.__name__}); see the server log"
        await asyncio.to_thread(self._record_verdict, live, verdict, detail)
        self._done(live, verdict, detail)

    def _done(self, live: LiveRun, verdict: str, detail: str) -> None:
        live.verification, live.verification_detail, live.finished = verdict, detail, True
        self.live.pop(live.id, None)
        live.transcript.touch()

    def _record_end(self, live: LiveRun) -> None:
        output = live.transcript.merged()
        values: store.RunEnd = {
            "status": live.status,
            "exit_code": live.exit_code,
            "error": live.error,
            "output": output,
            "truncated": live.transcript.capped or live.status == "capped",
            "finished_at": time.time(),
            "duration": live.duration,
        }
        detail = {
            "run": live.id,
            "status": live.status,
            "exit_code": live.exit_code,
            "duration": live.duration,
            "error": live.error,
            "output": excerpt(output),
        }
        p = live.prepared
        with self.svc.engine.begin() as conn:
            store.finish_run(conn, live.id, values)
            accounts.write_audit(conn, live.user, "action.finished", f"{p.action.id}@{p.device.row.name}", detail, live.ip)

    def _record_verdict(self, live: LiveRun, verdict: str, detail: str) -> None:
        p = live.prepared
        with self.svc.engine.begin() as conn:
            store.set_verification(conn, live.id, verdict, detail)
            audit = {"run": live.id, "verification": verdict, "detail": detail[:1000]}
            accounts.write_audit(conn, live.user, "action.verified", f"{p.action.id}@{p.device.row.name}", audit, live.ip)
            if p.alert_id is not None:
                shown = VERDICT_WORDS.get(verdict, verdict)
                store.note_on_alert(conn, p.alert_id, live.user.name, f"run #{live.id} {p.action.title}: {live.status}, {shown}")

    async def _run_ssh(self, live: LiveRun) -> None:
        p = live.prepared
        target = ssh_target(p.device.row, self.svc.settings)
        command = p.plan.command or ""
        loop = asyncio.get_running_loop()

        def sink(stream: str, data: bytes) -> None:
            try:
                loop.call_soon_threadsafe(live.transcript.feed, stream, data)
            except RuntimeError:
                pass  # the server is stopping and its loop closed: the run is recorded as interrupted

        try:
            result = await ssh_run(self.svc, target, command, p.action.timeout, p.action.max_output, sink)
        except HostKeyMismatch as exc:
            live.status, live.error = "error", f"refused before signing in, nothing ran: {exc}"
            return
        except HostKeyUnknown:
            live.status, live.error = "error", "the SSH host key is not trusted yet; nothing ran (trust it on the device page)"
            return
        except (CollectError, ValueError) as exc:
            live.status, live.error = "error", f"nothing ran: {exc}"
            return
        live.exit_code = result.exit_code
        if result.timed_out:
            live.status, live.error = "timed_out", f"still running after {p.action.timeout:g} s: the remote command was killed"
        elif result.truncated:
            live.status = "capped"
            live.error = f"output passed {p.action.max_output} bytes: the remote command was stopped"
        elif result.exit_code == 0:
            live.status = "succeeded"
        else:
            live.status = "failed"
            if result.exit_code is None:
                live.error = "the command ended without an exit status"

    async def _run_snmp(self, live: LiveRun) -> None:
        target = snmp_write_target(live.prepared.device.row, self.svc.settings)
        client = SnmpClient()
        say = live.transcript.add
        try:
            for step in live.prepared.plan.steps:
                if not isinstance(step, SetStep):
                    say("stdout", f"wait {step.seconds:g} s\n")
                    await asyncio.sleep(step.seconds)
                    continue
                if not await _set_and_read_back(client, target, step, say):
                    live.status, live.exit_code = "failed", 1
                    return
            live.status, live.exit_code = "succeeded", 0
        finally:
            await client.close()


async def _set_and_read_back(client: SnmpClient, target: Target, step: SetStep, say: Any) -> bool:
    for oid, kind, value, _read_back in step.varbinds:
        say("stdout", f"SET {oid} {kind.upper()} {value if kind == 'integer' else repr(value)}\n")
    try:
        await client.set(target, [(oid, value) for oid, _kind, value, _read_back in step.varbinds])
    except CollectError as exc:
        say("stderr", f"refused: {exc}\n")
        return False
    say("stdout", "ok\n")
    checks = [(oid, value) for oid, _kind, value, read_back in step.varbinds if read_back]
    if not checks:
        return True
    try:
        got = await client.get(target, [oid for oid, _value in checks])
    except CollectError as exc:
        say("stderr", f"read back failed: {exc}\n")
        return False
    same = True
    for oid, value in checks:
        now = got.get(oid)
        say("stdout", f"read back {oid} = {now!r}\n")
        if str(now) != str(value):
            say("stderr", f"the device reports {now!r}, not {value!r}\n")
            same = False
    return same


async def ssh_run(
    svc: Services,
    target: Target,
    command: str,
    limit: float,
    max_bytes: int = STDOUT_MAX,
    sink: OutputSink | None = None,
) -> CommandResult:
    """Run on the poller's pooled, host-key-verified connection, or a fresh one when polling is off here."""
    collector = svc.poller.collector("ssh") if svc.poller is not None else None
    if isinstance(collector, SshCollector):
        return await collector.run_command(target, command, limit, max_bytes, sink)
    return await run_command(target, command, limit, max_bytes, sink)


def manager(svc: Services) -> RunManager:
    """The RunManager of this app (created, with the catalog loaded, on first use if install did not run)."""
    if svc.runs is None:
        svc.runs = RunManager(svc, load_catalog(svc.settings.actions_file))
    return svc.runs


def install(svc: Services) -> None:
    """At start: load and validate the catalog (ConfigError stops the server), close runs a crash left open."""
    catalog = load_catalog(svc.settings.actions_file)
    with svc.engine.begin() as conn:
        stale = store.interrupt_unfinished(conn)
    if stale:
        log.warning("%d action runs were left running by a previous server process; marked interrupted", stale)
    svc.runs = RunManager(svc, catalog)
    if catalog.actions:
        log.info("%d actions in the catalog %s", len(catalog.actions), catalog.path)


async def shutdown(svc: Services) -> None:
    """Cancel runs in progress (they are recorded as interrupted)."""
    found = svc.runs
    if found is None:
        return
    tasks = list(found._tasks)
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=15)
