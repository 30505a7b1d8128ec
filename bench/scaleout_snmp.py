"""SNMP devices on `pocketnoc serve` (scheduler: queue) + queue workers + PostgreSQL, against the in-process
scheduler on the same devices in the same run (issue 18).

The agents are bench.run's: net-snmp snmpd processes answering on 127.1.X.Y:161 inside a network namespace of
this benchmark's own (`pnsnmpq`, so it never touches bench.run's `pnbench`). Each case runs in a measurement
process inside that namespace (bench.worker mode `scaleout_snmp`), so serve and the workers it starts poll the
agents from inside; they reach the root namespace's PostgreSQL through its Unix socket (/var/run/postgresql: a
file, the same in every network namespace; 127.0.0.1:5432 inside the namespace is the namespace's own loopback).
Every case gets a scratch database, the shipped default settings and the same inventory.

Counted per measured window (one interval each): polls done against polls due, poll start lag, CPU from /proc
of the pocketnoc processes and of PostgreSQL (the backends of the case's database and the server's background
processes; other databases' backends are left out: other jobs share this server), the scratch database's growth
and the WAL written. The queue's polls and lags come from its run log (check_runs); the in-process scheduler
keeps no run log, so its polls come from the /metrics counters and its lag from /metrics scraped every 15 s
(quantiles of the last 5,000 polls each: p50 the median of the scrapes, p99 the highest).

    python -m bench.scaleout_snmp [--devices 10000] [--rounds 3] [--windows 2] [--workers 2] [--interval 60]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench import scaleout as so
from bench.common import quantile
from bench.profiling import machine_jiffies
from bench.settle import done as _done
from bench.settle import scrape as _scrape
from bench.settle import settle as _settle

NAMESPACE = "pnsnmpq"
SOCKET_DIR = "/var/run/postgresql"
SCRAPE_S = 15.0  # the in-process lag deque holds the last 5,000 polls: 30 s at 10,000 devices per minute
DRAIN_S = 15.0  # a batch logs its runs when its last poll ends: wait for the window's last batches


def _waited(pid: int) -> float:
    """Seconds the process's threads were runnable but waited for a CPU (the machine's other load)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def pg_cpu(db: str, url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL process serving this database or the whole server (the background
    processes: checkpointer, WAL writer, ...), by pid. Backends of other databases (other jobs' tests) are left out."""
    with psycopg.connect(url) as conn:
        pids = [int(r[0]) for r in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE (datname = %s OR datname IS NULL) AND pid <> pg_backend_pid()", (db,))]
    return {pid: so._cpu([pid]) for pid in pids}


def pg_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two pg_cpu readings: processes born in between count whole; ended ones are lost (rare: the
    pools keep their connections)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _db_figures(case: so.Case) -> dict[str, float]:
    """Database size, WAL position and sample rows inserted so far."""
    with psycopg.connect(case.url) as conn:
        row = conn.execute(
            "SELECT pg_database_size(current_database()), pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'),"
            " coalesce((SELECT sum(n_tup_ins) FROM pg_stat_user_tables"
            "           WHERE schemaname = 'public' AND relname LIKE 'samples%'), 0)").fetchone()
    assert row is not None
    return {"db_bytes": float(row[0]), "wal_bytes": float(row[1]), "samples": float(row[2])}


def _snapshot(case: so.Case, procs: list[tuple[str, int]], port: int, token: str | None) -> dict[str, Any]:
    """Counters first (a busy in-process server can take seconds to answer), then the clock and CPU right after."""
    snap: dict[str, Any] = {}
    if token is not None:
        metrics = _scrape(port, token, tries=3)
        if metrics is None:
            raise RuntimeError("the in-process server did not answer /metrics three times in 30 s")
        snap["metrics"] = metrics
    snap.update(t=time.time(), cpu={name: so._cpu([pid]) for name, pid in procs}, pg=pg_cpu(case.db, case.url),
                wait={name: _waited(pid) for name, pid in procs}, machine=machine_jiffies(), **_db_figures(case))
    return snap


def _window(case: so.Case, procs: list[tuple[str, int]], port: int, token: str | None, seconds: float,
            agent_pids: list[int]) -> dict[str, Any]:
    """One measured window: the figures that need no run log."""
    a0, s0 = so._cpu(agent_pids), _snapshot(case, procs, port, token)
    scrapes: list[tuple[float, float]] = []
    missed = 0
    end = s0["t"] + seconds
    while (left := end - time.time()) > 0:
        time.sleep(min(SCRAPE_S, left))
        if token is not None and end - time.time() > 1:
            m = _scrape(port, token)
            if m is None:
                missed += 1
                continue
            scrapes.append((m.get('pocketnoc_poller_start_lag_seconds{quantile="0.5"}', 0.0),
                            m.get('pocketnoc_poller_start_lag_seconds{quantile="0.99"}', 0.0)))
    s1, a1 = _snapshot(case, procs, port, token), so._cpu(agent_pids)
    by_proc = {name: s1["cpu"][name] - s0["cpu"][name] for name, _ in procs}
    pg = pg_delta(s0["pg"], s1["pg"])
    row: dict[str, Any] = {
        "t0": s0["t"], "t1": s1["t"], "seconds": s1["t"] - s0["t"], "cpu_s": sum(by_proc.values()), "cpu_by_proc": by_proc,
        "pg_cpu_s": pg,
        "agents_cpu_s": a1 - a0, "db_bytes": s1["db_bytes"] - s0["db_bytes"], "wal_bytes": s1["wal_bytes"] - s0["wal_bytes"],
        "samples": s1["samples"] - s0["samples"], "pg_processes": len(s1["pg"]),
        "waited_by_proc": {name: s1["wait"][name] - s0["wait"][name] for name, _ in procs},
        "machine_busy_cores": (os.cpu_count() or 1) * (s1["machine"][0] - s0["machine"][0])
        / max(1, s1["machine"][1] - s0["machine"][1]),
        "load1": os.getloadavg()[0],
    }  # fmt: skip
    if token is not None:
        scrapes.append((s1["metrics"].get('pocketnoc_poller_start_lag_seconds{quantile="0.5"}', 0.0),
                        s1["metrics"].get('pocketnoc_poller_start_lag_seconds{quantile="0.99"}', 0.0)))
        row["done"] = _done(s1["metrics"]) - _done(s0["metrics"])
        row["lag_p50"] = statistics.median(s[0] for s in scrapes) if scrapes else None
        row["lag_p99"] = max((s[1] for s in scrapes), default=None)
        row["lag_source"], row["scrapes_unanswered"] = "metrics", missed
    return row


def _run_log(case: so.Case, row: dict[str, Any]) -> None:
    """The queue's polls and lags in a window, from its run log."""
    with psycopg.connect(case.url) as conn:
        runs = conn.execute("SELECT lag, ok FROM check_runs WHERE started >= %s AND started < %s",
                            (row["t0"], row["t1"])).fetchall()
    lags = [float(r[0]) for r in runs if r[0] is not None]
    row.update(done=len(runs), failed=sum(1 for r in runs if not r[1]), lag_p50=quantile(lags, 0.5),
               lag_p99=quantile(lags, 0.99), lag_max=max(lags, default=0.0), lag_source="check_runs")


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """One case (in the namespace): serve (+ workers) on a scratch database, warm-up, then `windows` intervals."""
    from bench.snmp_pipeline import snmp_specs

    so.PG["host"] = args.get("pg_host", SOCKET_DIR)
    mode, interval, workers = args["mode"], int(args["interval"]), int(args.get("workers", 2))
    specs = snmp_specs(args["addresses"], args["port"], interval)
    user = so._pg_user()
    case = so.Case(user, len(specs), 0, mode, inventory=specs)
    try:
        token = None
        if mode == "inprocess":  # a token for /metrics, made with the settings alone (10,000 devices load slowly)
            config = case.root / "pn.yaml"
            full = config.read_text()
            config.write_text(yaml.safe_dump({"settings": yaml.safe_load(full)["settings"]}))
            case.cli("user", "add", "bench", "--role", "viewer", stdin="bench-password-123\n")
            token = case.cli("token", "create", "bench").strip().splitlines()[-1]
            config.write_text(full)
        started = time.monotonic()
        serve, port = so._serve(case, timeout=900.0)
        procs = [("serve", serve.pid)]
        if mode == "queue":
            procs += [(f"worker{i}", case.spawn("worker", "--name", f"bench-w{i}").pid) for i in range(workers)]
        start_s = time.monotonic() - started
        time.sleep(float(args["warmup"]))
        settled = _settle(case, port, token, len(specs), interval, float(args.get("settle_max", 0.0)))
        settled_s = None if settled is None else time.monotonic() - started  # from serve's start
        rows = [_window(case, procs, port, token, interval, args.get("agent_pids", [])) for _ in range(args["windows"])]
        if mode == "queue":
            time.sleep(DRAIN_S)
            for row in rows:
                _run_log(case, row)
        for row in rows:
            row["due"] = len(specs) * row["seconds"] / interval
        exited = [name for (name, _), proc in zip(procs, case.procs, strict=False) if proc.poll() is not None]
        return {"mode": mode, "devices": len(specs), "interval_s": interval, "workers": workers if mode == "queue" else 0,
                "start_s": start_s, "warmup_s": args["warmup"], "settle_max_s": args.get("settle_max", 0.0),
                "settled_s": settled_s, "windows": rows, "exited": exited,
                "rss_peak_mb": {name: _hwm_mb(pid) for name, pid in procs}}  # fmt: skip
    finally:
        case.close()


def summarise(case: dict[str, Any]) -> dict[str, Any]:
    """A case's figures over all its windows."""
    rows = case["windows"]
    done, due = sum(r["done"] for r in rows), sum(r["due"] for r in rows)
    per = max(done, 1)
    return {
        "done": done, "due": due, "done_share": done / due if due else 0.0,
        "lag_p50": statistics.median([r["lag_p50"] for r in rows if r.get("lag_p50") is not None] or [float("nan")]),
        "lag_p99": max((r["lag_p99"] for r in rows if r.get("lag_p99") is not None), default=float("nan")),
        "cpu_ms": 1000 * sum(r["cpu_s"] for r in rows) / per, "pg_ms": 1000 * sum(r["pg_cpu_s"] for r in rows) / per,
        "total_ms": 1000 * sum(r["cpu_s"] + r["pg_cpu_s"] for r in rows) / per,
        "cpu_util": sum(r["cpu_s"] for r in rows) / sum(r["seconds"] for r in rows),
        "pg_util": sum(r["pg_cpu_s"] for r in rows) / sum(r["seconds"] for r in rows),
        "agents_ms": 1000 * sum(r["agents_cpu_s"] for r in rows) / per,
        "db_bytes_per_poll": sum(r["db_bytes"] for r in rows) / per,
        "wal_bytes_per_poll": sum(r["wal_bytes"] for r in rows) / per,
        "samples_per_poll": sum(r["samples"] for r in rows) / per,
        "rss_peak_mb": case["rss_peak_mb"],
        "cpu_ms_by_proc": {name: 1000 * sum(r["cpu_by_proc"][name] for r in rows) / per for name in rows[0]["cpu_by_proc"]},
    }  # fmt: skip


def run(devices: int, rounds: int, windows: int, workers: int, interval: int, warmup: float,
        modes: tuple[str, ...] = ("inprocess", "queue"), settle_max: float = 0.0) -> dict[str, Any]:
    """Namespace and agents (bench.run's), then `rounds` × (in-process, queue), each case in its own process."""
    from bench import machine
    from bench.run import FULL, Bench

    log_dir = Path(tempfile.mkdtemp(prefix="pnbench-sosnmp-"))
    bench = Bench(FULL, log_dir, namespace=NAMESPACE)
    bench.results.update(machine=machine.facts(), scaleout_snmp=[])
    try:
        bench.setup_agents(devices)
        assert bench.fleet is not None
        base = {"addresses": bench.fleet.addresses(), "port": bench.fleet.port, "interval": interval, "warmup": warmup,
                "settle_max": settle_max, "windows": windows, "workers": workers,
                "agent_pids": [p.pid for p in bench.fleet.procs]}  # fmt: skip
        for r in range(rounds):
            for mode in modes:
                load = os.getloadavg()[0]
                bench.say(f"round {r + 1}/{rounds}: {mode}, {devices} devices every {interval} s (load {load:.2f})")
                try:
                    case = bench.worker("scaleout_snmp", {**base, "mode": mode}, warmup + settle_max + windows * interval + 1500)
                    case["summary"] = summarise(case)
                except RuntimeError as exc:
                    case = {"mode": mode, "error": str(exc)[-800:]}
                case.update(round=r + 1, load_before=load)
                bench.results["scaleout_snmp"].append(case)
                bench.checkpoint()
    finally:
        bench.teardown_agents()
    bench.results["machine"]["load_end"] = machine.loadavg()
    bench.results["log_dir"] = str(log_dir)
    bench.checkpoint()
    return bench.results


def _spread(values: list[float], digits: int = 2, unit: str = "") -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}{unit}"
    return f"{mean:.{digits}f}{unit} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def _rss(case: dict[str, Any]) -> str:
    return ", ".join(f"{name} {mb:.0f}" for name, mb in case["rss_peak_mb"].items() if mb is not None)


def plan(quick: bool) -> dict[str, Any]:
    """run()'s arguments for bench.run: the issue's size, or a two-minute smoke run."""
    if quick:
        return {"devices": 300, "rounds": 1, "windows": 1, "workers": 2, "interval": 15, "warmup": 25.0}
    return {"devices": 10_000, "rounds": 3, "windows": 2, "workers": 2, "interval": 60, "warmup": 75.0}


def _steady_after(case: dict[str, Any]) -> str:
    if not case.get("settle_max_s"):
        return "not waited for"
    settled = case.get("settled_s")
    return f"{settled:.0f} s" if settled is not None else f"not within {case['warmup_s'] + case['settle_max_s']:.0f} s"


def section(results: dict[str, Any] | None, heading: bool = False) -> str:
    """The BENCHMARKS.md tables: each case, then mean (min–max) over the rounds and the queue/in-process ratio."""
    cases = [c for c in (results or {}).get("scaleout_snmp", []) if "summary" in c]
    if not cases:
        return ""
    first = cases[0]
    lines = [
        "",
        "## Scale-out with SNMP devices: serve + queue workers + PostgreSQL against in-process (`bench/scaleout_snmp.py`)",
        "",
    ] if heading else []
    lines += [
        f"{first['devices']:,} SNMP devices every {first['interval_s']} s; each case {len(first['windows'])} measured "
        f"interval(s) after {first['warmup_s']:.0f} s of warm-up; CPU ms per poll done.",
        "",
        "| round | scheduler | load avg before | polls done / due | lag p50 | lag p99 | pocketnoc CPU ms/poll "
        "| PostgreSQL CPU ms/poll | total ms/poll | × in-process | peak RSS MB | steady after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    base = {c["round"]: c["summary"]["total_ms"] for c in cases if c["mode"] == "inprocess"}
    ratios: list[float] = []
    for c in cases:
        s = c["summary"]
        label = "in-process" if c["mode"] == "inprocess" else f"queue, {c['workers']} workers"
        ratio = ""
        if c["mode"] == "queue" and c["round"] in base:
            ratios.append(s["total_ms"] / base[c["round"]])
            ratio = f"{ratios[-1]:.2f}×"
        lines.append(f"| {c['round']} | {label} | {c['load_before']:.2f} | {s['done']:,.0f} / {s['due']:,.0f} "
                     f"({100 * s['done_share']:.1f} %) | {s['lag_p50']:.2f} s | {s['lag_p99']:.2f} s | {s['cpu_ms']:.2f} | "
                     f"{s['pg_ms']:.2f} | {s['total_ms']:.2f} | {ratio} | {_rss(c)} | {_steady_after(c)} |")  # fmt: skip
    lines += ["", "Mean (min–max) over the rounds:", "",
              "| scheduler | polls done / due | lag p50 | lag p99 | pocketnoc CPU ms/poll | PostgreSQL CPU ms/poll "
              "| total ms/poll | pocketnoc cores | PostgreSQL cores | DB growth B/poll | WAL B/poll | samples/poll |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for mode in ("inprocess", "queue"):
        ss = [c["summary"] for c in cases if c["mode"] == mode]
        if not ss:
            continue

        def cell(key: str, digits: int = 2, unit: str = "", scale: float = 1.0) -> str:
            return _spread([scale * s[key] for s in ss], digits, unit)  # noqa: B023 - used at once, in this iteration

        lines.append(f"| {mode} | {cell('done_share', 1, ' %', 100)} | {cell('lag_p50')} s | {cell('lag_p99')} s "
                     f"| {cell('cpu_ms')} | {cell('pg_ms')} | {cell('total_ms')} | {cell('cpu_util')} | {cell('pg_util')} "
                     f"| {cell('db_bytes_per_poll', 0)} | {cell('wal_bytes_per_poll', 0)} | {cell('samples_per_poll', 0)} |")
    if ratios:
        lines += ["", f"Queue / in-process total CPU per poll, same round: {_spread(ratios)}×."]
    failed = [c for c in (results or {}).get("scaleout_snmp", []) if "error" in c]
    for c in failed:
        lines += ["", f"Round {c.get('round')} {c.get('mode')} failed: {c['error'][-300:]}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Parse flags, run, print the JSON path and the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of (in-process, queue) cases, alternating")
    parser.add_argument("--windows", type=int, default=2, help="measured intervals per case")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--warmup", type=float, default=None, help="seconds before measuring (default: interval + 15)")
    parser.add_argument("--settle", type=float, default=0.0,
                        help="after the warm-up, wait up to this many seconds more for the steady state")
    parser.add_argument("--queue-first", action="store_true", help="each round: the queue, then in-process")
    parser.add_argument("--only", choices=("inprocess", "queue"), help="one case a round (e.g. to profile it)")
    parser.add_argument("--render", metavar="RESULTS_JSON", help="only print the tables of saved figures")
    opts = parser.parse_args()
    if opts.render:
        print(section(json.loads(Path(opts.render).read_text())))
        return
    from bench.run import Interrupted, _on_term

    signal.signal(signal.SIGTERM, _on_term)
    warmup = opts.warmup if opts.warmup is not None else opts.interval + 15.0
    try:
        modes = ("queue", "inprocess") if opts.queue_first else ("inprocess", "queue")
        if opts.only:
            modes = (opts.only,)
        results = run(opts.devices, opts.rounds, opts.windows, opts.workers, opts.interval, warmup, modes,
                      opts.settle)
    except (KeyboardInterrupt, Interrupted):
        print("interrupted: cleaned up", file=sys.stderr)
        sys.exit(130)
    print(f"raw figures: {results['log_dir']}/results.json", file=sys.stderr)
    print(section(results))


if __name__ == "__main__":
    main()
