"""The terminal's WebSocket: same-origin, the session cookie, and a one-time ticket from a CSRF-checked POST.

Frames: binary from the browser is input; text from the browser is JSON control ({"t": "r", "c": cols, "r": rows} to
resize, {"t": "x"} to end). Binary to the browser is shell output; text to the browser is JSON: ready (session id,
resume token), error (why it cannot open), end (why it ended).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from server.auth import principal as principals
from server.auth.access import SESSION_COOKIE
from server.auth.grants import has_grant
from server.auth.principal import Principal
from server.runtime import Services
from server.services.terminal.gate import TerminalRefused
from server.services.terminal.manager import Live, TerminalManager, manager
from server.store.db import DBAPIError

router = APIRouter()
MAX_FRAME = 64 * 1024  # the page sends pastes in pieces well below this
POLICY_VIOLATION, TOO_BIG, GONE = 1008, 1009, 4000


def same_origin(ws: WebSocket) -> bool:
    """The page that opens the socket is ours: its Origin names this host (cross-site WebSocket hijacking)."""
    origin = ws.headers.get("origin")
    host = ws.headers.get("host")
    return bool(origin and host) and urlsplit(origin or "").netloc.lower() == (host or "").lower()


def _caller(ws: WebSocket, svc: Services) -> Principal | None:
    """The signed-in caller from the session cookie only (a browser's socket; never a bearer token)."""
    s = svc.settings
    cookie = ws.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    with svc.engine.begin() as conn:
        found = principals.resolve(conn, "", cookie, s.session_idle_minutes * 60, s.session_max_hours * 3600, None)
    return found if found is not None and found.stage == "full" else None


def _size(value: str | None, default: int) -> int:
    try:
        return int(value or default)
    except ValueError:
        return default


async def _refuse(ws: WebSocket, message: str, code: int = POLICY_VIOLATION) -> None:
    await ws.send_text(json.dumps({"t": "error", "message": message}))
    await ws.close(code=code)


async def _start(ws: WebSocket, mgr: TerminalManager, caller: Principal) -> Live | None:
    """The session this socket opens (ticket) or resumes (resume token), or None after telling the browser why."""
    q = ws.query_params
    if "ticket" in q:
        ticket = mgr.redeem(q["ticket"], caller)
        if ticket is None:
            await _refuse(ws, "this terminal link was used or has expired; open the terminal again from the device page")
            return None
        try:
            return await mgr.open(ticket, caller, _size(q.get("cols"), 80), _size(q.get("rows"), 24))
        except TerminalRefused as exc:
            await _refuse(ws, exc.message)
            return None
    live = mgr.resumable(q.get("resume", ""), caller)
    if live is None:
        await _refuse(ws, "this terminal session has ended and cannot be resumed", GONE)
    elif not has_grant(caller, "terminal"):  # revoked since it opened: the session ends
        await mgr.end(live, "permission revoked")
        await _refuse(ws, "you no longer hold the terminal permission; the session was ended")
        return None
    return live


async def _send_output(ws: WebSocket, mgr: TerminalManager, live: Live, queue: asyncio.Queue[bytes]) -> None:
    while True:
        data = await mgr.next_output(live, queue)
        if live.closed and (not data or queue.empty()):  # told only once the end is stored
            if data:
                await ws.send_bytes(data)
            await ws.send_text(json.dumps({"t": "end", "reason": live.ended}))
            await ws.close(code=1000)
            return
        if data:
            await ws.send_bytes(data)


async def _receive_input(ws: WebSocket, mgr: TerminalManager, live: Live) -> None:
    while live.ended is None:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        data, text = message.get("bytes"), message.get("text")
        if len(data or b"") > MAX_FRAME or len(text or "") > MAX_FRAME:
            await _refuse(ws, f"input frames are limited to {MAX_FRAME // 1024} KB", TOO_BIG)
            return
        if data:
            await mgr.input(live, data)
            continue
        try:
            control = json.loads(text or "")
        except ValueError:
            continue
        if not isinstance(control, dict):
            continue
        if control.get("t") == "r" and isinstance(control.get("c"), int) and isinstance(control.get("r"), int):
            await mgr.resize(live, control["c"], control["r"])
        elif control.get("t") == "x":
            await mgr.end(live, "user")
            return


@router.websocket("/terminal/ws")
async def terminal_socket(ws: WebSocket) -> None:
    """Open or resume a terminal session and relay it until either side ends."""
    svc: Services = ws.app.state.services
    if not same_origin(ws):
        await ws.close(code=POLICY_VIOLATION, reason="cross-origin")
        return
    try:
        caller = await run_in_threadpool(_caller, ws, svc)
    except DBAPIError:
        caller = None
    if caller is None:
        await ws.close(code=POLICY_VIOLATION, reason="not signed in")
        return
    await ws.accept()
    mgr = manager(svc)
    live = await _start(ws, mgr, caller)
    if live is None:
        return
    queue, kept = mgr.attach(live)
    s = svc.settings
    ready = {"t": "ready", "session": live.id, "resume": live.resume_token, "device": live.allowed.device_name,
             "idle": s.terminal_idle_minutes * 60, "max": s.terminal_max_minutes * 60,
             "grace": s.terminal_resume_seconds}  # fmt: skip
    sender = asyncio.create_task(_send_output(ws, mgr, live, queue))
    try:
        await ws.send_text(json.dumps(ready))
        if kept:
            await ws.send_bytes(kept)
        receiver = asyncio.create_task(_receive_input(ws, mgr, live))
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await receiver
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        if not sender.done() and live.ended is None:
            sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await sender
        await mgr.detach(live, queue)
