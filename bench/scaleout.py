"""Scale-out benchmark: checks per second with 1, 2 and 4 queue workers, poll start lag, queue overhead vs in-process.

Real processes on the local PostgreSQL (127.0.0.1:5432, a scratch database per case): one
`pocketnoc serve` (scheduler: queue) and k `pocketnoc worker`s, every device a TCP check of a
local listener every 5 s, so the figures are pocketnoc's (scheduling, queue, poller, writer)
rather than an SNMP agent's. The in-process scheduler runs the same inventory in the same run.
CPU is read from /proc for the pocketnoc processes and for every PostgreSQL backend.

    python -m bench.scaleout [--quick]      # prints JSON; bench.run includes it in BENCHMARKS.md
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml
from cryptography.fernet import Fernet

from bench.common import quantile

ROOT = Path(__file__).resolve().parent.parent
POCKETNOC = Path(sys.executable).parent / "pocketnoc"
# TCP on the root namespace's loopback; a process inside a network namespace sets host to the socket directory
# ("/var/run/postgresql"): the Unix socket is a file, reachable from every network namespace.
PG: dict[str, Any] = {"host": "127.0.0.1", "port": 5432}
INTERVAL = 5
TICKS = os.sysconf("SC_CLK_TCK")


def db_url(user: str, db: str) -> str:
    """The database URL of `db` at PG (TCP, or a Unix socket directory given as host)."""
    if str(PG["host"]).startswith("/"):
        return f"postgresql://{user}@/{db}?host={PG['host']}&port={PG['port']}"
    return f"postgresql://{user}@{PG['host']}:{PG['port']}/{db}"


def child_env() -> dict[str, str]:
    """pocketnoc commands run this tree's code (the venv's console script may point at another checkout)."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _pg_user() -> str:
    for user in ("postgres", "root"):
        try:
            with psycopg.connect(**PG, user=user, dbname="postgres", connect_timeout=5):
                return user
        except psycopg.Error:
            continue
    raise RuntimeError("PostgreSQL at 127.0.0.1:5432 is not reachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listener() -> int:
    """A TCP server that accepts and closes, in a daemon thread: the cheapest real check target."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(4096)

    def serve() -> None:
        while True:
            conn, _ = server.accept()
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(server.getsockname()[1])


def _cpu(pids: list[int]) -> float:
    """utime+stime seconds of processes (gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / TICKS


def _postgres_pids() -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


class Case:
    """One scratch database, its config, and the pocketnoc processes on it."""

    def __init__(self, user: str, devices: int, target_port: int, scheduler: str,
                 inventory: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> None:
        self.user = user
        self.db = f"pnbench_scaleout_{secrets.token_hex(4)}"
        self.root = Path(tempfile.mkdtemp(prefix="pnbench-scaleout-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        with psycopg.connect(**PG, user=user, dbname="postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.db}")
        self.url = db_url(user, self.db)
        key = self.root / "secret.key"
        key.write_bytes(Fernet.generate_key())
        settings = {"database_url": self.url, "scheduler": scheduler, "secret_key_file": str(key), "log_level": "WARNING",
                    "backoff_max_seconds": 0, "poll_concurrency": 200}  # fmt: skip
        if inventory is None:
            tcp = [{"type": "tcp", "port": target_port}]
            inventory = [{"name": f"t{i:05d}", "address": "127.0.0.1", "interval": INTERVAL, "checks": tcp}
                         for i in range(devices)]
        else:  # a caller's own devices run on the shipped defaults, plus its overrides
            settings = {k: settings[k] for k in ("database_url", "scheduler", "secret_key_file", "log_level")}
        settings.update(extra or {})
        (self.root / "pn.yaml").write_text(yaml.safe_dump({"settings": settings, "devices": inventory}))

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run a pocketnoc command on this case; its stdout."""
        cmd = [str(POCKETNOC), *args, "--config", str(self.root / "pn.yaml"), "--data-dir", str(self.root / "data")]
        return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=300, check=True,
                              env=child_env()).stdout

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a pocketnoc process in the background."""
        cmd = [str(POCKETNOC), *args, "--config", str(self.root / "pn.yaml"), "--data-dir", str(self.root / "data")]
        log = open(self.root / f"{args[0]}-{len(self.procs)}.log", "wb")  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env())
        self.procs.append(proc)
        return proc

    def query(self, sql: str, *params: Any) -> Any:
        """One value from the case's database."""
        with psycopg.connect(self.url) as conn:
            row = conn.execute(sql, params).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        """Stop the processes and drop the database."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(**PG, user=self.user, dbname="postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        shutil.rmtree(self.root, ignore_errors=True)


def _serve(case: Case, timeout: float = 120.0) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = case.spawn("serve", "--port", str(port))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("serve exited: " + (case.root / "serve-0.log").read_text()[-2000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("serve did not start")


def queue_case(user: str, devices: int, workers: int, target: int, warmup: float, window: float) -> dict[str, Any]:
    """Serve + k workers: checks/s, lag quantiles, CPU per check (pocketnoc and PostgreSQL)."""
    case = Case(user, devices, target, "queue")
    try:
        serve, _port = _serve(case)
        pids = [serve.pid] + [case.spawn("worker", "--name", f"bench-w{i}", "--concurrency", "100").pid for i in range(workers)]
        time.sleep(warmup)
        pg = _postgres_pids()
        cpu0, pg0, t0 = _cpu(pids), _cpu(pg), time.time()
        time.sleep(window)
        cpu1, pg1, t1 = _cpu(pids), _cpu(pg), time.time()
        time.sleep(8)  # a batch commits its runs when its last check ends: count those started in the window too
        with psycopg.connect(case.url) as conn:
            sql = "SELECT lag FROM check_runs WHERE started BETWEEN %s AND %s AND lag IS NOT NULL"
            lags = [float(r[0]) for r in conn.execute(sql, (t0, t1))]
        checks = len(lags)
        return {
            "mode": "queue", "workers": workers, "devices": devices, "demand_per_s": devices / INTERVAL,
            "checks_per_s": checks / (t1 - t0), "lag_p50": quantile(lags, 0.5), "lag_p95": quantile(lags, 0.95),
            "lag_p99": quantile(lags, 0.99), "cpu_ms_per_check": 1000 * (cpu1 - cpu0) / max(checks, 1),
            "pg_cpu_ms_per_check": 1000 * (pg1 - pg0) / max(checks, 1), "window_s": t1 - t0,
        }  # fmt: skip
    finally:
        case.close()


def _metrics(port: int, token: str) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", params={"scope": "process"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10).text
    out = {}
    for line in text.splitlines():
        if line.startswith(("pocketnoc_poller_checks_total", "pocketnoc_poller_start_lag_seconds")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def inprocess_case(user: str, devices: int, target: int, warmup: float, window: float) -> dict[str, Any]:
    """The embedded scheduler on the same database engine: checks/s, lag, CPU per check."""
    case = Case(user, devices, target, "inprocess")
    try:
        case.cli("user", "add", "bench", "--role", "viewer", stdin="bench-password-123\n")
        token = case.cli("token", "create", "bench").strip().splitlines()[-1]
        serve, port = _serve(case)
        time.sleep(warmup)
        pg = _postgres_pids()
        m0, cpu0, pg0, t0 = _metrics(port, token), _cpu([serve.pid]), _cpu(pg), time.time()
        time.sleep(window)
        m1, cpu1, pg1, t1 = _metrics(port, token), _cpu([serve.pid]), _cpu(pg), time.time()
        done = [k for k in m1 if 'result="ok"' in k or 'result="failed"' in k]
        checks = sum(m1[k] - m0.get(k, 0.0) for k in done)
        return {
            "mode": "inprocess", "workers": 0, "devices": devices, "demand_per_s": devices / INTERVAL,
            "checks_per_s": checks / (t1 - t0), "lag_p50": m1.get('pocketnoc_poller_start_lag_seconds{quantile="0.5"}', 0.0),
            "lag_p95": None, "lag_p99": m1.get('pocketnoc_poller_start_lag_seconds{quantile="0.99"}', 0.0),
            "cpu_ms_per_check": 1000 * (cpu1 - cpu0) / max(checks, 1), "pg_cpu_ms_per_check": 1000 * (pg1 - pg0) / max(checks, 1),
            "window_s": t1 - t0,
        }  # fmt: skip
    finally:
        case.close()


def run(quick: bool = False) -> dict[str, Any]:
    """Every case; a failed case is reported with its error instead of stopping the others."""
    user = _pg_user()
    target = _listener()
    heavy, light = (600, 150) if quick else (2000, 400)
    warmup, window = (12.0, 15.0) if quick else (15.0, 30.0)
    cases: list[tuple[str, Any]] = [
        (f"queue-{k}", lambda k=k: queue_case(user, heavy, k, target, warmup, window)) for k in (1, 2, 4)
    ]
    cases += [
        ("inprocess-light", lambda: inprocess_case(user, light, target, warmup, window)),
        ("queue-2-light", lambda: queue_case(user, light, 2, target, warmup, window)),
    ]
    results: dict[str, Any] = {"heavy_devices": heavy, "light_devices": light, "interval_s": INTERVAL, "cpus": os.cpu_count(),
                               "cases": {}}  # fmt: skip
    for name, fn in cases:
        print(f"[scaleout] {name}", file=sys.stderr, flush=True)
        try:
            results["cases"][name] = fn()
        except Exception as exc:  # a broken case must not hide the others
            results["cases"][name] = {"error": f"{exc.__class__.__name__}: {str(exc)[-500:]}"}
    return results


def _f(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def section(results: dict[str, Any] | None) -> str:
    """The BENCHMARKS.md section of these figures."""
    if not results:
        return ""
    c = results["cases"]
    lines = [
        "",
        "## Scale-out: queue workers on PostgreSQL (`bench/scaleout.py`)",
        "",
        f"Every device is one TCP check of a local listener every {results['interval_s']} s, so the figures are pocketnoc's own "
        "(scheduler, Procrastinate queue, poller, writer, alerting) and not an SNMP agent's. All processes share this "
        "machine's cores with PostgreSQL; CPU is per completed check, PostgreSQL backends counted separately.",
        "",
        f"Throughput at a demand of {results['heavy_devices'] / results['interval_s']:.0f} checks/s "
        f"({results['heavy_devices']} devices):",
        "",
        "| workers | checks/s | scaling efficiency | lag p50 | lag p95 | lag p99 | pocketnoc CPU ms/check | PG CPU ms/check |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = c.get("queue-1", {}).get("checks_per_s")
    for k in (1, 2, 4):
        r = c.get(f"queue-{k}", {})
        if "error" in r or not r:
            lines.append(f"| {k} | error: {r.get('error', 'not run')} | | | | | | |")
            continue
        eff = r["checks_per_s"] / (k * base) if base else None
        lines.append(f"| {k} | {_f(r['checks_per_s'])} | {_f(eff * 100 if eff else None, 0)}% | {_f(r['lag_p50'], 3)} s | "
                     f"{_f(r['lag_p95'], 3)} s | {_f(r['lag_p99'], 3)} s | {_f(r['cpu_ms_per_check'], 2)} | "
                     f"{_f(r['pg_cpu_ms_per_check'], 2)} |")  # fmt: skip
    if results.get("cpus"):
        lines += ["", f"Every process (PostgreSQL, serve, the workers) shares this machine's {results['cpus']} cores, so "
                      "past the first worker more workers add no CPU here and the efficiency says how the queue holds up as "
                      "they contend; workers on their own machines each bring their own cores."]  # fmt: skip
    lines += [
        "",
        f"Queue overhead per check, same run, {results['light_devices']} devices "
        f"({results['light_devices'] / results['interval_s']:.0f} checks/s, below saturation):",
        "",
        "| scheduler | checks/s | lag p50 | lag p99 | pocketnoc CPU ms/check | PostgreSQL CPU ms/check |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in (("inprocess-light", "in-process (APScheduler)"), ("queue-2-light", "queue, 2 workers")):
        r = c.get(name, {})
        if "error" in r or not r:
            lines.append(f"| {label} | error: {r.get('error', 'not run')} | | | | |")
            continue
        lines.append(f"| {label} | {_f(r['checks_per_s'])} | {_f(r['lag_p50'], 3)} s | {_f(r['lag_p99'], 3)} s | "
                     f"{_f(r['cpu_ms_per_check'], 2)} | {_f(r['pg_cpu_ms_per_check'], 2)} |")  # fmt: skip
    a, b = c.get("inprocess-light", {}), c.get("queue-2-light", {})
    if "cpu_ms_per_check" in a and "cpu_ms_per_check" in b:
        extra = (b["cpu_ms_per_check"] + b["pg_cpu_ms_per_check"]) - (a["cpu_ms_per_check"] + a["pg_cpu_ms_per_check"])
        lines += ["", f"The queue costs {extra:.2f} ms of CPU per check more than the in-process scheduler "
                      "(pocketnoc and PostgreSQL together): deferring, fetching and finishing a job, the hand-off row "
                      "and the run-log row."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    outcome = run(quick="--quick" in sys.argv)
    print(json.dumps(outcome, indent=1))
    print(section(outcome), file=sys.stderr)
