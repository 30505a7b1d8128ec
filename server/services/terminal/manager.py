"""The live terminal sessions of this process: tickets, open, attach and detach a browser, input limits, end, sweep.

The SSH side (agents.ssh_shell) blocks and runs in threads; everything here runs on the event loop. A session outlives a
dropped browser connection for `terminal_resume_seconds` (output is kept meanwhile) and is resumed with a one-time token.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agents.base import CollectError
from agents.ssh_shell import Shell, clamp_size, open_shell
from server.auth.principal import Principal
from server.runtime import Services
from server.services.terminal.gate import Allowed, TerminalRefused, audit_refusal, still_held
from server.services.terminal.recording import Header, Recorder
from server.store import accounts
from server.store import terminal as store

log = logging.getLogger("pocketnoc.terminal")
TICKET_SECONDS = 60.0
QUEUE_MAX = 64  # output pieces waiting for the browser before the shell is paused (SSH flow control does the rest)
BACKLOG_MAX = 256 * 1024  # output kept for a browser that dropped; the shell is paused beyond it
INPUT_RATE = 512 * 1024  # bytes per second a browser may type or paste (a 1 MB paste takes ~2 s)
INPUT_BURST = 256 * 1024
FLUSH_SECONDS = 5.0  # a recording's waiting lines are stored at least this often
SWEEP_SECONDS = 0.5
PRUNE_SECONDS = 3600.0
ACCESS_CHECK_SECONDS = 15.0  # a connected session of a user who lost it (signed out, revoked) ends within this


@dataclass(frozen=True, slots=True)
class Ticket:
    """A one-time permission to open a checked terminal, bound to the session that asked for it."""

    allowed: Allowed
    user_id: int
    session_id: str | None
    ip: str
    expires: float


@dataclass
class Live:
    """One open terminal session."""

    id: int
    principal: Principal
    allowed: Allowed
    ip: str
    started: float
    recorder: Recorder
    shell: Shell | None = None
    last_input: float = 0.0
    resume_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    queue: asyncio.Queue[bytes] | None = None  # the attached browser's output
    queued: int = 0
    backlog: bytearray = field(default_factory=bytearray)
    detached_at: float | None = None
    ended: str | None = None  # why it ended, once it has
    closed: bool = False  # its end is stored (recording, audit): only then is the browser told it ended
    bytes_in: int = 0
    bytes_out: int = 0
    flushed_at: float = 0.0
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    allowance: float = INPUT_BURST
    allowance_at: float = field(default_factory=time.monotonic)


class TerminalManager:
    """Sessions of this server process; `clock` is what idle, maximum and resume limits are measured with."""

    def __init__(self, svc: Services, clock: Callable[[], float] = time.time) -> None:
        self.svc = svc
        self.clock = clock
        self.live: dict[int, Live] = {}
        self._tickets: dict[str, Ticket] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._pruned_at = 0.0
        self._checked_at = 0.0

    # ------------------------------------------------------------------ tickets and opening

    def issue(self, allowed: Allowed, principal: Principal, ip: str) -> str:
        """A one-time ticket for the WebSocket that opens this terminal."""
        now = self.clock()
        self._tickets = {k: t for k, t in self._tickets.items() if t.expires > now}
        token = secrets.token_urlsafe(24)
        self._tickets[token] = Ticket(allowed, principal.user_id, principal.session_id, ip, now + TICKET_SECONDS)
        return token

    def redeem(self, token: str, principal: Principal) -> Ticket | None:
        """The ticket (used up) if it is valid and the caller's own session asked for it."""
        ticket = self._tickets.pop(token, None)
        if ticket is None or ticket.expires <= self.clock():
            return None
        if ticket.user_id != principal.user_id or ticket.session_id != principal.session_id:
            return None
        return ticket

    async def open(self, ticket: Ticket, principal: Principal, cols: int, rows: int) -> Live:
        """Connect, open the shell, record and audit; TerminalRefused (audited) when it cannot open."""
        a = ticket.allowed
        if len([s for s in self.live.values() if not s.ended]) >= self.svc.settings.terminal_max_sessions:
            why = f"{self.svc.settings.terminal_max_sessions} terminal sessions are open already; try again later"
            await asyncio.to_thread(audit_refusal, self.svc, principal, ticket.ip, a.device_name, why, 429)
            raise TerminalRefused(why, 429)
        loop = asyncio.get_running_loop()
        cols, rows = clamp_size(cols, rows)
        now = self.clock()
        box: list[Live] = []

        def sink(data: bytes | None) -> None:  # the shell's reader thread
            if not box:
                return
            coro = self._deliver(box[0], data)
            try:
                future = asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:  # the loop is gone: the server is stopping
                coro.close()
                return
            with contextlib.suppress(RuntimeError, asyncio.CancelledError, concurrent.futures.CancelledError):
                future.result()

        try:
            shell = await asyncio.to_thread(open_shell, a.target, cols, rows, sink)
        except CollectError as exc:
            why = f"cannot open a shell on {a.device_name}: {exc}"
            await asyncio.to_thread(audit_refusal, self.svc, principal, ticket.ip, a.device_name, why, 502)
            raise TerminalRefused(why, 502) from None
        header = Header(cols, rows, now, f"{principal.name}@{a.device_name}", principal.name, a.device_name, a.reason)
        new = store.NewSession(principal.user_id, principal.name, a.device_id, a.device_name, a.reason, a.alert_id,
                               ticket.ip, now, cols, rows)  # fmt: skip
        try:
            session_id = await asyncio.to_thread(self._record_open, new, principal)
        except BaseException:
            await asyncio.to_thread(shell.close)
            raise
        live = Live(session_id, principal, a, ticket.ip, now, Recorder(header), shell, last_input=now, flushed_at=now)
        self.live[session_id] = live
        box.append(live)
        shell.start()
        self._ensure_sweeper()
        return live

    def _record_open(self, new: store.NewSession, principal: Principal) -> int:
        with self.svc.engine.begin() as conn:
            session_id = store.create(conn, new)
            detail = {"session": session_id, "reason": new.reason, "alert": new.alert_id, "size": f"{new.cols}x{new.rows}"}
            accounts.write_audit(conn, principal.user, "terminal.open", new.device_name, detail, new.ip)
        return session_id

    # ------------------------------------------------------------------ output and the attached browser

    async def _deliver(self, live: Live, data: bytes | None) -> None:
        if data is None:
            self._spawn(self.end(live, "shell exited"))
            return
        live.bytes_out += len(data)
        live.recorder.output(self.clock(), data)
        await self._maybe_flush(live)
        async with live.cond:
            while live.ended is None:
                if live.queue is not None and live.queued < QUEUE_MAX:
                    live.queue.put_nowait(data)
                    live.queued += 1
                    return
                if live.queue is None and len(live.backlog) + len(data) <= BACKLOG_MAX:
                    live.backlog += data
                    return
                await live.cond.wait()

    def attach(self, live: Live) -> tuple[asyncio.Queue[bytes], bytes]:
        """Attach a browser: its output queue and what was sent while none was attached."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        live.queue, live.queued, live.detached_at = queue, 0, None
        kept, live.backlog = bytes(live.backlog), bytearray()
        live.resume_token = secrets.token_urlsafe(24)
        self._spawn(self._notify(live))
        return queue, kept

    async def next_output(self, live: Live, queue: asyncio.Queue[bytes]) -> bytes:
        """The next output for this browser (waits)."""
        data = await queue.get()
        async with live.cond:
            if live.queue is queue:
                live.queued -= 1
            live.cond.notify_all()
        return data

    async def detach(self, live: Live, queue: asyncio.Queue[bytes]) -> None:
        """The browser went away: keep the session (and its output) for a resume, unless it has ended."""
        async with live.cond:
            if live.queue is not queue:
                return
            while not queue.empty():
                live.backlog += queue.get_nowait()
            del live.backlog[: max(0, len(live.backlog) - BACKLOG_MAX)]
            live.queue, live.queued, live.detached_at = None, 0, self.clock()
            live.cond.notify_all()

    async def _notify(self, live: Live) -> None:
        async with live.cond:
            live.cond.notify_all()

    def resumable(self, token: str, principal: Principal) -> Live | None:
        """The detached session this resume token belongs to, if it is the caller's and not ended."""
        for live in self.live.values():
            if live.ended is None and secrets.compare_digest(live.resume_token, token):
                if live.principal.user_id != principal.user_id:
                    return None
                live.principal = principal  # resumed from another of the user's sessions: that one holds it now
                return live
        return None

    # ------------------------------------------------------------------ input

    async def input(self, live: Live, data: bytes) -> None:
        """Keystrokes or a paste: rate-limited (waits rather than drops), recorded, sent to the shell."""
        if live.ended is not None or live.shell is None:
            return
        now = time.monotonic()
        live.allowance = min(INPUT_BURST, live.allowance + (now - live.allowance_at) * INPUT_RATE)
        live.allowance_at = now
        live.allowance -= len(data)
        if live.allowance < 0:
            await asyncio.sleep(-live.allowance / INPUT_RATE)
        live.last_input = self.clock()
        live.bytes_in += len(data)
        live.recorder.input(live.last_input, data)
        sent = live.shell.try_write(data)  # a keystroke goes at once while the window has room: no thread hop
        try:
            if sent < len(data):
                await asyncio.to_thread(live.shell.write, data[sent:])
        except CollectError:
            await self.end(live, "shell exited")
            return
        await self._maybe_flush(live)

    async def resize(self, live: Live, cols: int, rows: int) -> None:
        """The browser's window changed size."""
        if live.ended is None and live.shell is not None:
            cols, rows = clamp_size(cols, rows)
            live.recorder.resize(self.clock(), cols, rows)
            await asyncio.to_thread(live.shell.resize, cols, rows)

    # ------------------------------------------------------------------ recording

    async def _maybe_flush(self, live: Live, force: bool = False) -> None:
        if live.recorder.full and live.ended is None:
            self._spawn(self.end(live, "recording full"))
        if force or live.recorder.ready or self.clock() - live.flushed_at >= FLUSH_SECONDS:
            live.flushed_at = self.clock()
            chunk = live.recorder.take()
            if chunk is not None:
                await asyncio.to_thread(self._store_chunk, live.id, *chunk)

    def _store_chunk(self, session_id: int, seq: int, lines: str) -> None:
        with self.svc.engine.begin() as conn:
            store.add_chunk(conn, self.svc.box, session_id, seq, lines)

    # ------------------------------------------------------------------ ending

    async def end(self, live: Live, reason: str, by: Principal | None = None) -> None:
        """End a session once: close the shell, finish the recording, audit terminal.close with the reason."""
        if live.ended is not None:
            return
        live.ended = reason
        now = self.clock()  # when it ended, however long closing the shell then takes
        async with live.cond:
            live.cond.notify_all()
        try:
            if live.shell is not None:
                await asyncio.to_thread(live.shell.close)
                await asyncio.to_thread(live.shell.join, 2.0)
            live.recorder.close(now)
            await self._maybe_flush(live, force=True)
            await asyncio.to_thread(self._record_close, live, reason, now, by)
        finally:
            live.closed = True
            if live.queue is not None:
                live.queue.put_nowait(b"")  # wakes the browser's sender, which then says the session ended
            self.live.pop(live.id, None)

    def _record_close(self, live: Live, reason: str, now: float, by: Principal | None) -> None:
        detail: dict[str, object] = {"session": live.id, "reason": reason, "seconds": round(now - live.started, 1),
                                     "bytes_in": live.bytes_in, "bytes_out": live.bytes_out}  # fmt: skip
        if by is not None:
            detail["ended_by"] = by.name
        with self.svc.engine.begin() as conn:
            store.finish(conn, live.id, now, reason, live.bytes_in, live.bytes_out)
            accounts.write_audit(conn, by.user if by else live.principal.user, "terminal.close", live.allowed.device_name,
                                 detail, live.ip)  # fmt: skip

    async def end_by_admin(self, session_id: int, admin: Principal) -> bool:
        """An admin ends a live session; False if it is not live here."""
        live = self.live.get(session_id)
        if live is None or live.ended is not None:
            return False
        await self.end(live, "ended by admin", admin)
        return True

    # ------------------------------------------------------------------ limits, resume grace, retention

    async def sweep(self) -> None:
        """End sessions past their idle or maximum time or resume grace; store waiting recordings; prune old ones."""
        s, now = self.svc.settings, self.clock()
        for live in list(self.live.values()):
            if live.ended is not None:
                continue
            if now - live.started >= s.terminal_max_minutes * 60:
                await self.end(live, "max duration")
            elif now - live.last_input >= s.terminal_idle_minutes * 60:
                await self.end(live, "idle")
            elif live.detached_at is not None and now - live.detached_at >= s.terminal_resume_seconds:
                await self.end(live, "connection lost")
            else:
                await self._maybe_flush(live)
        if now - self._checked_at >= ACCESS_CHECK_SECONDS:
            self._checked_at = now
            await self._end_lost_access()
        if now - self._pruned_at >= PRUNE_SECONDS:
            self._pruned_at = now
            await asyncio.to_thread(self._prune, now)

    async def _end_lost_access(self) -> None:
        """End sessions, connected or not, whose user signed out, was disabled or demoted, or lost the grant."""
        for live in list(self.live.values()):
            if live.ended is None:
                why = await asyncio.to_thread(still_held, self.svc, live.principal)
                if why is not None:
                    await self.end(live, why)

    def _prune(self, now: float) -> None:
        with self.svc.engine.begin() as conn:
            gone = store.prune(conn, now - self.svc.settings.terminal_retention_days * 86400)
            # Left open by a process that stopped (past the maximum duration, no process can still hold it).
            for session_id in store.unfinished(conn, now - self.svc.settings.terminal_max_minutes * 60 - 60):
                if session_id not in self.live:
                    store.finish(conn, session_id, now, "server stopped", 0, 0)
        if gone:
            log.info("pruned %d terminal recordings older than %d days", gone, self.svc.settings.terminal_retention_days)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.sweep()
            except Exception:
                log.exception("terminal sweep failed")

    def start(self) -> None:
        """Begin sweeping (limits and retention) now, not only once the first terminal opens."""
        self._ensure_sweeper()

    def _ensure_sweeper(self) -> None:
        loop = asyncio.get_running_loop()
        # An app whose lifespan is entered again (a test client per test) runs on a new loop: sweep on that one.
        if self._sweeper is None or self._sweeper.done() or self._sweeper.get_loop() is not loop:
            self._sweeper = loop.create_task(self._sweep_forever())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """End every session (the server stops)."""
        for live in list(self.live.values()):
            await self.end(live, "server stopped")
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            if sweeper.get_loop() is asyncio.get_running_loop():  # one of an earlier loop is only cancelled
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper


def manager(svc: Services) -> TerminalManager:
    """This app's terminal manager (made on first use)."""
    if svc.terminals is None:
        svc.terminals = TerminalManager(svc)
    return svc.terminals
