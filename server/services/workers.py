"""Polling workers: forgetting one that stopped or went silent."""

from __future__ import annotations

import time

from server.auth.access import Principal
from server.runtime import Services
from server.services.errors import Conflict, NotFound
from server.store import accounts
from server.store import workers as store


def forget_worker(svc: Services, p: Principal, ip: str | None, worker_id: int) -> str:
    """Remove a stopped or silent worker (its alert resolves; a live one would only register again)."""
    with svc.engine.begin() as conn:
        found = [w for w in store.list_workers(conn, svc.settings.worker_silent_seconds, svc.settings.worker_dead_seconds)
                 if w["id"] == worker_id]  # fmt: skip
        if not found:
            raise NotFound("no such worker")
        if found[0]["state"] == "running":
            raise Conflict("the worker is running; stop it first (it would register again)")
        name = store.forget(conn, worker_id, time.time()) or ""
        accounts.write_audit(conn, p.user, "worker.forget", name, {"site": found[0]["site"]}, ip)
    return name
