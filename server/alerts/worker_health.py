"""'Silent' alerts of scaled-out polling: a worker that stopped reporting, a site (or the default pool) nobody polls.

Alerts belong to a device in pocketnoc, so each one is raised on the first device of the pool
concerned (the lowest id tagged `site-NAME`, or of the default pool), with labels naming the
worker or site; it notifies like any other alert and resolves itself when a heartbeat returns.
"""

from __future__ import annotations

import time

from server.store.alerts import fire_event_alert, resolve_event_alert
from server.store.db import Engine
from server.store.workers import (
    DEFAULT_POOL,
    device_pools,
    known_sites,
    list_workers,
    open_event_alerts,
    site_label,
    worker_label,
)

WORKER_RULE = "worker-silent"
SITE_RULE = "site-silent"


def _pool_name(pool: str) -> str:
    return "the default pool" if pool == DEFAULT_POOL else f"site {pool}"


def evaluate(engine: Engine, silent_after: float, armed: bool) -> None:
    """Raise or resolve the silent alerts; `armed` is False until workers had time to report after a start."""
    now = time.time()
    with engine.begin() as conn:
        rows = list_workers(conn, silent_after)
        pools = device_pools(conn, known_sites(conn))
        open_workers = {key: device for _a, device, key in open_event_alerts(conn, WORKER_RULE)}
        open_sites = {key: device for _a, device, key in open_event_alerts(conn, SITE_RULE)}
        live = {w["site"] or DEFAULT_POOL for w in rows if w["state"] == "running"}
        for w in rows:
            key = worker_label(w["name"])
            pool = w["site"] or DEFAULT_POOL
            if w["state"] == "silent" and armed and key not in open_workers and pools.get(pool):
                title = f"Worker {w['name']} ({_pool_name(pool)}) is silent"
                text = f"no heartbeat for {int(w['age'])}s from {w['host']} (pid {w['pid']}); its checks go to the other workers"
                fire_event_alert(conn, WORKER_RULE, pools[pool][0], key, "warning", title, now, text)
            elif w["state"] != "silent" and key in open_workers:
                resolve_event_alert(conn, WORKER_RULE, open_workers[key], key, now, f"worker {w['name']} is {w['state']}")
        names = {worker_label(w["name"]) for w in rows}
        for key, device in open_workers.items():
            if key not in names:
                resolve_event_alert(conn, WORKER_RULE, device, key, now, "the worker was removed")
        for pool, ids in pools.items():
            key = site_label(pool)
            if pool not in live and armed and key not in open_sites:
                title = f"Nobody polls {_pool_name(pool)}: {len(ids)} devices unchecked"
                text = "no worker serving it has reported within the silence limit; start or fix its workers"
                fire_event_alert(conn, SITE_RULE, ids[0], key, "critical", title, now, text)
            elif pool in live and key in open_sites:
                resolve_event_alert(conn, SITE_RULE, open_sites[key], key, now, f"a worker polls {_pool_name(pool)} again")
        wanted = {site_label(p) for p in pools}
        for key, device in open_sites.items():
            if key not in wanted:
                resolve_event_alert(conn, SITE_RULE, device, key, now, "the pool has no devices any more")
