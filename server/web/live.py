"""Live updates: one broker per app watches for new state and alert events and fans them out over SSE.

The writer's listener (called on the writer thread after each commit) only wakes the broker; the broker
then reads what is new since its cursor (state_events and alert_events ids), so changes made elsewhere
(an acknowledgement through the API, another process) are found too, by a slower periodic check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from types import FrameType
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from server.auth.access import Viewer
from server.runtime import Services, get_services
from server.store import overview as overview_store
from server.store.status import CheckOutcome, Transition
from server.web.streams import SESSION_CHECK_SECONDS, session_alive

log = logging.getLogger("pocketnoc.live")
router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
POLL_SECONDS = 3.0  # finds changes the writer did not announce (API acks, other processes)
MIN_GAP = 0.25  # coalesce bursts of commits into one read
QUEUE_SIZE = 64
RETRY_MS = 2000
MAX_STREAM_SECONDS = 3600.0  # streams are renewed hourly so nothing lives forever behind a proxy


class Broker:
    """Fans changes out to subscriber queues; runs only while someone listens."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.cursor: tuple[int, int] | None = None
        self.published = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer: Any = None

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of changes for one stream (starts the watcher when it is the first)."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.add(queue)
        self._loop = asyncio.get_running_loop()
        if self._wake is None:
            self._wake = asyncio.Event()
        self._attach_writer()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="pocketnoc-live")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """Forget a stream's queue; the watcher stops with the last one."""
        self.subscribers.discard(queue)
        if not self.subscribers and self._task is not None:
            self._task.cancel()
            self._task = None
            self.cursor = None  # the next watcher starts from "now", not from a backlog nobody saw

    def _attach_writer(self) -> None:
        writer = self.svc.writer
        if writer is not None and writer is not self._writer:
            writer.listeners.append(self.on_commit)
            self._writer = writer

    def on_commit(self, transitions: list[Transition], outcomes: list[CheckOutcome]) -> None:
        """Writer listener (writer thread): something was committed; let the broker look."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or not self.subscribers or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            loop.call_soon_threadsafe(wake.set)

    async def _read(self) -> overview_store.LiveChanges | None:
        def work() -> overview_store.LiveChanges | None:
            with self.svc.reader.connect() as conn:
                if self.cursor is None:
                    self.cursor = overview_store.live_cursor(conn)
                    return None
                return overview_store.changes_since(conn, self.cursor)

        return await run_in_threadpool(work)

    async def _run(self) -> None:
        wake = self._wake
        if wake is None:
            return
        while self.subscribers:
            try:
                found = await self._read()
            except Exception:
                log.exception("reading live changes failed; retrying")
                found = None
            if found is not None and (found["devices"] or found["alerts"]):
                self.cursor = found["cursor"]
                self.publish({"devices": found["devices"], "alerts": found["alerts"], "ts": time.time()})
                if found["more"]:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), POLL_SECONDS)
            wake.clear()
            await asyncio.sleep(MIN_GAP)

    def close_streams(self) -> None:
        """Ask every open stream to end now (the server is stopping); callable from a signal handler."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._say_closing)

    def _say_closing(self) -> None:
        for queue in list(self.subscribers):
            while queue.full():
                queue.get_nowait()
            queue.put_nowait({"closing": True})

    def publish(self, change: dict[str, Any]) -> None:
        """Hand a change to every stream; a stream too slow to keep up gets one 'resync' instead."""
        self.published += 1
        change = {**change, "seq": self.published}
        for queue in list(self.subscribers):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait({"resync": True, "seq": self.published, "devices": [], "alerts": []})


def broker(svc: Services) -> Broker:
    """The app's broker (made on first use)."""
    if svc.live is None:
        svc.live = Broker(svc)
    return svc.live


@router.get("/live", response_class=EventSourceResponse)
async def live_stream(request: Request, svc: SvcDep, p: Viewer) -> AsyncIterator[ServerSentEvent]:
    """Server-Sent Events: `hello` once, then `change` events; `bye` when the session ends."""
    hub = broker(svc)
    queue = hub.subscribe()
    started = time.monotonic()
    next_check = started + SESSION_CHECK_SECONDS
    try:
        yield ServerSentEvent(event="hello", data={"ts": time.time()}, retry=RETRY_MS)
        while time.monotonic() - started < MAX_STREAM_SECONDS:
            try:
                change = await asyncio.wait_for(queue.get(), max(0.1, next_check - time.monotonic()))
            except TimeoutError:
                change = None
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + SESSION_CHECK_SECONDS
                if not await session_alive(svc, p):
                    yield ServerSentEvent(event="bye", data={"reason": "signed out"})
                    return
            if change is not None and change.get("closing"):
                return  # the server is stopping; the page reconnects to the next one
            if change is not None:
                yield ServerSentEvent(event="change", id=str(change["seq"]), data=change)
    finally:
        hub.unsubscribe(queue)


class StreamingServer(uvicorn.Server):
    """uvicorn's server, which also ends the live streams when told to stop: shutdown need not wait them out."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The stop signal: streams first, then uvicorn's graceful shutdown."""
        broker(self.services).close_streams()
        super().handle_exit(sig, frame)
