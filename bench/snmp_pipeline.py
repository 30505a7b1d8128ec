"""(c) and (d): the real Poller + Writer + SQLite + jobs, driven round by round or by the real dispatcher."""

from __future__ import annotations

import asyncio
import gc
import logging
import tempfile
import threading
import time
import tracemalloc
from collections import deque
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from agents.snmp import SnmpCollector
from bench import oids
from bench.common import Stopwatch, quantile, status_mb
from bench.profiling import Profile, machine_jiffies, sched_wait, thread_cpu, tree_cpu
from bench.sampler import Sampler
from bench.scale_probe import ScaleProbe, due_histogram
from server.config.inventory import DeviceSpec
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.polling import pipeline
from server.polling.poller import Poller
from server.polling.writer import Writer
from server.runtime import Services
from server.store.db import make_engine, migrate
from server.store.devices import create_device

SHUTDOWN_LIMIT = 90.0  # seconds allowed for the app's lifespan exit (pipeline.stop) after a scale run


def make_settings(data_dir: Path) -> Settings:
    """Default settings on a fresh data dir (the figures are for the shipped defaults)."""
    return Settings(data_dir=data_dir, log_level="WARNING")


def snmp_specs(addresses: list[str], port: int, interval: int) -> list[dict[str, Any]]:
    """One SNMP v2c device per address."""
    return [
        {"name": f"dev{i:05d}", "address": address, "interval": interval,
         "snmp": {"version": "2c", "port": port, "community": "public"}}
        for i, address in enumerate(addresses)
    ]


def seed(settings: Settings, specs: list[dict[str, Any]]) -> None:
    """Create the schema and the devices through the real store code (validated, secrets sealed)."""
    engine = make_engine(settings.db_url)
    migrate(engine)
    box = SecretBox.from_file(settings.key_file)
    with engine.begin() as conn:
        for spec in specs:
            create_device(conn, DeviceSpec.model_validate(spec), box, int(spec.get("interval") or 60))
    engine.dispose()


def services(settings: Settings) -> Services:
    """Services as create_app builds them (writer engine, reader engine, secrets)."""
    engine = make_engine(settings.db_url)
    reader = make_engine(settings.db_url, immediate=False)
    return Services(settings=settings, engine=engine, reader=reader, box=SecretBox.from_file(settings.key_file))


def plan_summary(poller: Poller) -> dict[str, Any]:
    """What the collector decided to poll on the bench devices (the baseline mirrors it)."""
    collector = poller._collectors.get("snmp")
    plan = oids.plan_of(collector) if isinstance(collector, SnmpCollector) else None
    if plan is None:
        return {}
    return {
        "profiles": list(plan.profiles),
        "scalars": len(plan.scalars),
        "columns": len(plan.columns),
        "columns_each_poll": len(oids.steady_columns(plan)),
    }


def memory_report(devices: int, before: tracemalloc.Snapshot, top: int = 12) -> dict[str, Any]:
    """Python memory kept since `before` (devices seeded, nothing polled yet), by allocating line, per device."""
    gc.collect()
    skip = [tracemalloc.Filter(False, tracemalloc.__file__)]
    after = tracemalloc.take_snapshot().filter_traces(skip)
    diffs = [d for d in after.compare_to(before.filter_traces(skip), "lineno") if d.size_diff > 0]
    total = sum(d.size_diff for d in diffs) or 1
    lines = [
        {"where": f"{_short_path(d.traceback[0].filename)}:{d.traceback[0].lineno}",
         "kb_per_device": d.size_diff / devices / 1024, "share": d.size_diff / total}
        for d in diffs[:top]
    ]
    tracemalloc.stop()
    return {"devices": devices, "total_mb": total / 2**20, "kb_per_device": total / devices / 1024, "top": lines}


def _short_path(path: str) -> str:
    for anchor in ("site-packages/", "/main/", "python3.11/"):
        if anchor in path:
            return path.split(anchor, 1)[1]
    return path


def ssh_pool_stats(poller: Poller) -> dict[str, Any]:
    """Connections the SSH collector opened (reuse shows as about one per server)."""
    collector = poller._collectors.get("ssh")
    opened = getattr(collector, "connections_opened", None)
    return {} if opened is None else {"ssh_connections_opened": opened}


async def measure_rounds(addresses: list[str], port: int, rounds: int, profile: bool = False,
                         memory: bool = False) -> dict[str, Any]:
    """(c): warm up two rounds (detection, tuning, first rates), then CPU per poll over `rounds` rounds."""
    logging.basicConfig(level=logging.WARNING)
    if memory:
        tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="pnbench-c-") as tmp:
        settings = make_settings(Path(tmp))
        seed(settings, snmp_specs(addresses, port, 60))
        svc = services(settings)
        writer = Writer(svc.engine, settings)
        writer.start()
        poller = Poller(settings, writer.submit)
        jobs = pipeline.all_jobs(svc)

        async def sweep() -> None:
            await asyncio.gather(*(poller.run_check(job) for job in jobs))

        gc.collect()
        before = tracemalloc.take_snapshot() if memory else None
        for _ in range(2):
            await sweep()
        writer.flush(120)
        gc.collect()
        ok0, failed0, rows0 = poller.stats.ok, poller.stats.failed, writer.rows
        writer_tid = writer._thread.native_id if writer._thread else None
        loop_cpu0, writer_cpu0 = thread_cpu(threading.get_native_id()), thread_cpu(writer_tid)
        prof = Profile() if profile else None
        watch = Stopwatch()
        if prof:
            prof.start()
        for _ in range(rounds):
            await sweep()
        writer.flush(120)
        cpu, wall = watch.stop()
        if prof:
            prof.stop()
        loop_cpu, writer_cpu = thread_cpu(threading.get_native_id()) - loop_cpu0, thread_cpu(writer_tid) - writer_cpu0
        polls = rounds * len(jobs)
        result = {
            "polls": polls,
            "cpu_s": cpu,
            "wall_s": wall,
            "cpu_ms_per_poll": cpu / polls * 1000,
            "loop_thread_ms_per_poll": loop_cpu / polls * 1000,
            "writer_thread_ms_per_poll": writer_cpu / polls * 1000,
            "ok": poller.stats.ok - ok0,
            "failed": poller.stats.failed - failed0,
            "samples_per_poll": (writer.rows - rows0) / polls,
            "plan": plan_summary(poller),
            "profiled": profile,
        }
        if prof:
            result["profile"] = prof.report()
        if before is not None:
            # The loop still holds the handle that woke us with the last sweep's outcomes: let it go first.
            await asyncio.sleep(0)
            result["memory"] = memory_report(len(jobs), before)
        await poller.close()
        writer.stop()
        svc.engine.dispose()
        svc.reader.dispose()
        return result


async def measure_scale(specs: list[dict[str, Any]], interval: int, warmup: float, windows: int,
                        agent_pids: list[int], settle_max: float = 0.0) -> dict[str, Any]:
    """(d): the app's own lifespan (migrate, writer, poller, APScheduler dispatcher) for warm-up + windows.

    With `settle_max`, the warm-up goes on past `warmup` until the start-up is over (see `_settled`), for at most
    `settle_max` seconds more: the windows then measure the steady state, and `settled_s` says when it came.
    """
    from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED

    from server.web.app import create_app

    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="pnbench-d-") as tmp:
        settings = make_settings(Path(tmp))
        t_seed = time.perf_counter()
        seed(settings, specs)
        seed_s = time.perf_counter() - t_seed
        app = create_app(settings, poll=True)
        svc: Services = app.state.services
        missed = {"missed": 0, "max_instances": 0}

        def on_event(event: Any) -> None:
            missed["missed" if event.code == EVENT_JOB_MISSED else "max_instances"] += 1

        stack = AsyncExitStack()
        await stack.enter_async_context(app.router.lifespan_context(app))
        try:
            assert svc.poller is not None and svc.writer is not None and svc.dispatcher is not None
            poller, writer = svc.poller, svc.writer
            scheduler = getattr(svc.dispatcher, "scheduler", None)
            if scheduler is not None:  # APScheduler's own misfire events (the older dispatcher)
                scheduler.add_listener(on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
            probe = ScaleProbe(poller, writer)
            probe.start()
            started = time.perf_counter()
            await asyncio.sleep(warmup)
            settled_s: float | None = None
            while True:
                if _settled(poller, len(specs), interval):
                    settled_s = time.perf_counter() - started
                    break
                if time.perf_counter() - started >= warmup + settle_max:
                    break
                await asyncio.sleep(1)
            window_from = probe.mark()
            warm = {"ok": poller.stats.ok, "failed": poller.stats.failed, "rss_mb": status_mb("VmRSS")}
            poller.stats.lags = deque(maxlen=10_000_000)
            missed.update(missed=0, max_instances=0)
            ok0, failed0, rows0 = poller.stats.ok, poller.stats.failed, writer.rows
            skipped0, missed0 = poller.stats.skipped_overlap, _missed(svc.dispatcher)
            agents0, wait0, (busy0, all0) = tree_cpu(agent_pids), sched_wait(), machine_jiffies()
            sampler = Sampler()
            sampler.start()
            watch = Stopwatch()
            in_flight: list[int] = []
            for _ in range(windows * interval):
                await asyncio.sleep(1)
                in_flight.append(poller.stats.in_flight)
            cpu, wall = watch.stop()
            sampler.stop()
            probe.stop()
            probed = {**probe.report(window_from), "due": due_histogram(dispatch_offsets(svc.dispatcher, interval))}
            waited, (busy1, all1) = sched_wait() - wait0, machine_jiffies()
            if scheduler is None:  # the due-time dispatcher counts them itself
                missed.update(missed=_missed(svc.dispatcher) - missed0,
                              max_instances=poller.stats.skipped_overlap - skipped0)
            agents_cpu = tree_cpu(agent_pids) - agents0
            lags = list(poller.stats.lags)
            ok, failed = poller.stats.ok - ok0, poller.stats.failed - failed0
            backlog = writer._pending
            rows = writer.rows - rows0
            plan = plan_summary(poller)
            extra = ssh_pool_stats(poller)
        finally:
            # pipeline.stop runs here; blocked collector threads must not hang the benchmark.
            t_stop = time.perf_counter()
            try:
                await asyncio.wait_for(stack.aclose(), SHUTDOWN_LIMIT)
                shutdown: float | None = time.perf_counter() - t_stop
            except TimeoutError:
                shutdown = None
        due = len(specs) * windows
        return {
            "devices": len(specs),
            "interval_s": interval,
            "warmup_s": warmup,
            "settle_max_s": settle_max,
            "settled_s": settled_s,
            "window_s": wall,
            "seed_s": seed_s,
            "polls_due": due,
            "polls_done": ok + failed,
            "ok": ok,
            "failed": failed,
            "missed_runs": missed["missed"],
            "skipped_still_running": missed["max_instances"],
            "lag_p50_s": quantile(lags, 0.50),
            "lag_p99_s": quantile(lags, 0.99),
            "lag_max_s": max(lags, default=0.0),
            "cpu_s": cpu,
            "cpu_util": cpu / wall,
            "cpu_ms_per_poll": cpu / max(1, ok + failed) * 1000,
            "agents_cpu_util": agents_cpu / wall,
            "waited_for_cpu_util": waited / wall,
            "machine_busy": (busy1 - busy0) / max(1, all1 - all0),
            "sampler": sampler.report(),
            "rss_peak_mb": status_mb("VmHWM"),
            "rss_mb": status_mb("VmRSS"),
            "rss_after_warmup_mb": warm["rss_mb"],
            "in_flight_max": max(in_flight, default=0),
            "writer_backlog_end": backlog,
            "samples_per_s": rows / wall,
            "warmup_ok": warm["ok"],
            "warmup_failed": warm["failed"],
            "plan": plan,
            **extra,
            "shutdown_s": shutdown,
            "probe": probed,
        }


def _settled(poller: Any, devices: int, interval: int) -> bool:
    """The start-up is over: three polls a device done (detection; the second brings the rate series; then a steady
    one) and the polls of the last five seconds started less than five seconds late (p99)."""
    stats = poller.stats
    if stats.ok + stats.failed < 3 * devices:
        return False
    recent = list(stats.lags)[-max(1, devices * 5 // interval):]
    return bool(recent) and quantile(recent, 0.99) < 5.0


def _missed(dispatcher: object) -> int:
    """Turns the dispatcher passed over because the process was more than an interval behind."""
    due = getattr(dispatcher, "due", None)
    return int(getattr(due, "missed", 0))


def dispatch_offsets(dispatcher: object, interval: int) -> list[float]:
    """Each check's due second within the interval, as the dispatcher spread them."""
    offsets = getattr(dispatcher, "due_offsets", None)
    if callable(offsets):
        return list(offsets())
    starts: dict[str, float] = getattr(dispatcher, "_starts", {})
    return [start % interval for start in starts.values()]
