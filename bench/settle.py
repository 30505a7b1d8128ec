"""When a scale run's start-up is over: the scale-out cases' steady-state test (bench.scaleout_snmp), from the
in-process server's /metrics or the queue's run log."""

from __future__ import annotations

import time

import httpx
import psycopg

from bench import scaleout as so
from bench.common import quantile


def scrape(port: int, token: str, tries: int = 1) -> dict[str, float] | None:
    """The process's own /metrics (`scope=process`: not every device's samples, which cost the measured process
    seconds of CPU and a gigabyte at 10,000 devices), or None when a busy server does not answer within 30 s."""
    for _ in range(tries):
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", params={"scope": "process"},
                         headers={"Authorization": f"Bearer {token}"}, timeout=30).text
        except httpx.HTTPError:
            continue
        return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in text.splitlines())
                if name.startswith(("pocketnoc_poller_checks_total", "pocketnoc_poller_start_lag_seconds"))}
    return None


def done(m: dict[str, float]) -> float:
    """Polls done so far (ok and failed) by the /metrics counters."""
    return sum(v for k, v in m.items() if 'result="ok"' in k or 'result="failed"' in k)


def steady(case: so.Case, port: int, token: str | None, devices: int, interval: int) -> bool:
    """Three polls a device done, and the last 30 s (15 s back, for the queue's run log) kept the interval: ≥ 95 %
    of the polls due in it done, lag p99 < 5 s."""
    due = 0.95 * devices * 30 / interval
    if token is None:  # the queue: its run log
        now = time.time()
        with psycopg.connect(case.url) as conn:
            total = conn.execute("SELECT count(*) FROM check_runs").fetchone()
            recent = conn.execute("SELECT lag FROM check_runs WHERE started >= %s AND started < %s",
                                  (now - 45, now - 15)).fetchall()
        lags = [float(r[0]) for r in recent if r[0] is not None]
        return total is not None and total[0] >= 3 * devices and len(recent) >= due and quantile(lags, 0.99) < 5.0
    first = scrape(port, token)
    time.sleep(30)
    last = scrape(port, token)
    if first is None or last is None:
        return False
    return (done(last) >= 3 * devices and done(last) - done(first) >= due
            and last.get('pocketnoc_poller_start_lag_seconds{quantile="0.99"}', 99.0) < 5.0)


def settle(case: so.Case, port: int, token: str | None, devices: int, interval: int, limit: float) -> float | None:
    """Wait up to `limit` seconds more for the steady state; the seconds waited, or None if it did not come."""
    if limit <= 0:
        return None
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if steady(case, port, token, devices, interval):
            return time.monotonic() - began
        time.sleep(5)
    return None
