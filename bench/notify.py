"""Notification benchmarks: alert fired -> push received latency, and draining 1,000 queued notifications.

Run alone: `python -m bench.notify [--quick]` (prints the section; `--json`: one RESULT line of the figures);
`bench.run` calls `run()` and appends `section()` to BENCHMARKS.md. Everything runs on loopback: the app with its worker
(in-process, as `serve` runs it), the local Web Push service (verifies VAPID, decrypts) and a local webhook receiver.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import common


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


def _latency(env: Any, push: Any, count: int) -> dict[str, Any]:
    """Fire alerts one at a time (each its own commit, like the writer) and time until the push service has it."""
    from tests.server.notify_helpers import add_device, fire

    token = env.user("bench", "operator")
    sub = push.subscribe()
    added = env.client.post("/api/v1/push/subscriptions", json=sub, headers={"Authorization": f"Bearer {token}"})
    assert added.status_code == 201, added.text
    devices = [add_device(env.engine, f"lat-{i}") for i in range(count)]
    samples = []
    for device in devices:
        before = len(push.items())
        alert_id = fire(env.engine, device, f"lat-{device} is down")
        committed = time.time()
        got = push.wait_for(before + 1, timeout=30)
        arrived = next(p.ts for p in got if p.payload and p.payload.get("alert_id") == alert_id)
        samples.append((arrived - committed) * 1000)
        time.sleep(0.02)
    return {"count": count, "p50_ms": _pct(samples, 0.5), "p90_ms": _pct(samples, 0.9), "p99_ms": _pct(samples, 0.99),
            "max_ms": max(samples), "mean_ms": statistics.fmean(samples)}


def _drain(env: Any, receiver: Any, count: int) -> dict[str, Any]:
    """Queue `count` alerts in one commit, then measure the drain and the event loop's responsiveness meanwhile."""
    from server.store import alerts as alert_store
    from server.store import diagnostics
    from server.store import notify as notify_store

    with env.engine.begin() as conn:
        ids = diagnostics.add_quiet_devices(conn, [f"drain-{i}" for i in range(count)])
    lags: list[float] = []
    stop = False

    async def probe() -> None:
        while not stop:
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append((time.perf_counter() - t - 0.01) * 1000)

    portal = env.client.portal
    future = portal.start_task_soon(probe)
    health: list[float] = []
    before = len(receiver.items())
    started = time.time()
    with env.engine.begin() as conn:  # 1,000 alerts in one transaction: one outbox row each
        for device in ids:
            title = f"drain-{device} is down"
            alert_store.fire_event_alert(conn, "device-down", device, "", "critical", title, time.time(), "down")
    committed = time.time()
    while len(receiver.items()) - before < count and time.time() - committed < 300:
        t = time.perf_counter()
        env.client.get("/healthz")
        health.append((time.perf_counter() - t) * 1000)
        time.sleep(0.05)
    drained = time.time()
    deadline = time.time() + 30
    while time.time() < deadline:  # the last receipts are recorded a moment after the receiver has everything
        with env.engine.connect() as conn:
            if not notify_store.counts(conn).get("pending"):
                break
        time.sleep(0.1)
    stop = True
    future.result(timeout=10)
    with env.engine.connect() as conn:
        sent = notify_store.counts(conn, kind="trigger").get("sent", 0)
    delivered = len(receiver.items()) - before
    return {"count": count, "delivered": delivered, "queue_s": committed - started, "drain_s": drained - committed,
            "per_s": delivered / max(drained - committed, 1e-9), "loop_lag_p99_ms": _pct(lags, 0.99),
            "loop_lag_max_ms": max(lags),
            "healthz_p99_ms": _pct(health, 0.99), "healthz_max_ms": max(health), "sent": sent}


def _grouped(env: Any, receiver: Any, count: int) -> dict[str, Any]:
    """The default storm control: how many messages `count` simultaneous alerts become for one target."""
    from tests.server.notify_helpers import add_device, fire

    before = len(receiver.items())
    for i in range(count):
        fire(env.engine, add_device(env.engine, f"storm-{i}"), f"storm-{i} is down")
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(1.0)
        got = receiver.items()[before:]
        if any((r.json or {}).get("kind") == "summary" for r in got):
            break
    time.sleep(1.0)
    got = receiver.items()[before:]
    return {"alerts": count, "messages": len(got), "summaries": sum(1 for r in got if (r.json or {}).get("kind") == "summary")}


def measure(quick: bool) -> dict[str, Any]:
    """All figures (runs the app in this process)."""
    from tests.peers.receiver import start_receiver
    from tests.peers.webpush_service import start_push_service
    from tests.server.notify_helpers import notify_app

    results: dict[str, Any] = {"quick": quick}
    push, receiver = start_push_service(), start_receiver()
    try:
        with tempfile.TemporaryDirectory(prefix="pnbench-notify-") as tmp:
            dirs = [Path(tmp) / name for name in ("latency", "drain", "grouped")]
            for d in dirs:
                d.mkdir()
            hook = f"channels:\n  - {{name: hook, url: \"{receiver.url}/hook\"}}\n"
            # Grouping off, so every alert is one message: these runs measure the delivery path itself.
            with notify_app(dirs[0], "delivery: {burst: 100000}\n", push_allow_loopback=True) as env:
                results["latency"] = _latency(env, push, 60 if quick else 300)
            with notify_app(dirs[1], hook + "delivery: {burst: 100000}\n") as env:
                results["drain"] = _drain(env, receiver, 1000)
            with notify_app(dirs[2], hook) as env:
                results["grouped"] = _grouped(env, receiver, 50)
    finally:
        push.stop()
        receiver.stop()
    return results


def run(quick: bool = False, timeout: float = 900.0) -> dict[str, Any]:
    """Measure in a child process (its threads and event loop end with it); the figures, or an error."""
    return common.run_module("bench.notify", quick, timeout)


def section(r: dict[str, Any] | None) -> str:
    """The BENCHMARKS.md section."""
    return common.section("## Notifications", "notification", r, _lines)


def _lines(r: dict[str, Any]) -> list[str]:
    lat, drain, grouped = r["latency"], r["drain"], r["grouped"]
    return [
        "`python -m bench.notify`: the app with its delivery worker in one process (as `pocketnoc serve` runs it), a local "
        "Web Push service that verifies the VAPID JWT and decrypts every payload, and a local webhook receiver, all on "
        "loopback and on the same 2-core machine. Storm grouping is off for the first two rows so that every alert is "
        "one message.",
        "",
        "| measurement | result | target |",
        "|---|---|---|",
        f"| alert committed → push received by the push service ({lat['count']} alerts, one at a time) | "
        f"p50 {lat['p50_ms']:.0f} ms, p90 {lat['p90_ms']:.0f} ms, **p99 {lat['p99_ms']:.0f} ms**, max {lat['max_ms']:.0f} ms | "
        "p99 < 1 s |",
        f"| {drain['count']:,} notifications queued in one commit → all delivered (webhook) | "
        f"{drain['drain_s']:.1f} s ({drain['per_s']:.0f}/s), {drain['delivered']:,} delivered | drains |",
        f"| event loop lag while draining (10 ms probe) | p99 {drain['loop_lag_p99_ms']:.1f} ms, "
        f"max {drain['loop_lag_max_ms']:.0f} ms"
        " | polling not blocked |",
        f"| `GET /healthz` while draining | p99 {drain['healthz_p99_ms']:.0f} ms, max {drain['healthz_max_ms']:.0f} ms | |",
        f"| {grouped['alerts']} alerts at once to one channel, default storm control | {grouped['messages']} messages "
        f"({grouped['summaries']} summary) | one grouped notification, not {grouped['alerts']} |",
        "",
    ]


if __name__ == "__main__":
    common.main(__doc__, measure, section)
