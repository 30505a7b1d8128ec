"""A big inventory for page budgets (1,000 devices, 50 open alerts, a day of history), and a real server in a thread.

Rows go in through the store functions (create_device, fire_event_alert, write_samples): nothing is polled.
Used by the phone-app tests and by bench/pages.py.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from server.auth import passwords
from server.config.inventory import DeviceSpec
from server.config.loader import LoadedConfig
from server.config.settings import Settings
from server.keys.secretbox import SecretBox
from server.runtime import Services
from server.store.alerts import fire_event_alert
from server.store.db import Engine
from server.store.devices import create_device
from server.store.metrics import SeriesCache, labels_key, rollup, write_samples
from server.web.app import create_app
from server.web.live import StreamingServer
from tests import sql
from tests.peers import healthz
from tests.server.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONES = ("iPhone 13", "Pixel 7")
FACTS = {
    "sys_name": "switch-0000.example.net",
    "kind": "switch",
    "sys_descr": "Cisco IOS Software, C2960X",
    "uptime_seconds": 86400 * 41 + 3600 * 5,
    "sys_location": "Rack 4, room 2.17",
}


@dataclass
class Fleet:
    """Ids of the interesting rows of a built fleet."""

    devices: int
    alerts: list[int]
    graphed: int  # a device with a day of history, interfaces and resources
    down: list[int] = field(default_factory=list)


def _state(i: int) -> str:
    if i % 50 == 7:
        return "down"
    if i % 100 == 13:
        return "unreachable"
    if i % 100 == 29:
        return "degraded"
    return "up"


def _interfaces(count: int) -> list[dict[str, Any]]:
    return [
        {"index": n, "name": f"Gi1/0/{n}", "alias": "uplink" if n == 1 else "", "admin": "up",
         "oper": "up" if n % 3 else "down", "speed_bps": 1_000_000_000}
        for n in range(1, count + 1)
    ]  # fmt: skip


def build_fleet(engine: Engine, box: SecretBox, devices: int = 1000, alerts: int = 50) -> Fleet:
    """Insert `devices` devices (a few down, unreachable or degraded), `alerts` open alerts and history for one."""
    now = time.time()
    ids: list[int] = []
    names: dict[int, str] = {}
    with engine.begin() as conn:
        for i in range(devices):
            kind = ("switch", "linux", "router", "ups", "printer")[i % 5]
            spec = DeviceSpec(
                name=f"{kind}-{i:04d}",
                address=f"10.{i // 250}.{i % 250}.{1 + i % 200}",
                tags=[f"site-{i % 7}", kind],
                snmp={"version": "2c", "community": "public"},  # type: ignore[arg-type]
            )
            device_id = create_device(conn, spec, box, 60)
            ids.append(device_id)
            names[device_id] = spec.name
            state = _state(i)
            values: dict[str, Any] = {
                "state": state,
                "state_since": now - 60 * (i % 90) - 30,
                "last_polled": now - (i % 60),
                "last_ok": now - (i % 60) if state == "up" else now - 3600,
                "poll_ms": 12.0 + i % 40,
                "facts": {"sys_name": f"{kind}-{i:04d}.example.net", "kind": kind},
            }
            if state != "up":
                values["last_error"] = "snmp: no SNMP answer after 2 tries of 2s (host down, wrong port, or bad community)"
            sql.update(conn, "device_status", "device_id = :d", values, d=device_id)
        down = [d for i, d in enumerate(ids) if _state(i) in ("down", "unreachable")]
        for n in range(alerts):
            device_id = down[n % len(down)] if n < len(down) else ids[(n * 37) % len(ids)]
            severity = "critical" if n < len(down) else ("warning", "info")[n % 2]
            rule = "device-down" if n < len(down) else "interface-down"
            key = labels_key({} if n < len(down) else {"ifIndex": str(n), "ifName": f"Gi1/0/{n}"})
            name = names[device_id]  # as the built-in rules word them
            title = f"{name} is {_state(ids.index(device_id))}" if n < len(down) else f"{name}: interface Gi1/0/{n} is down"
            fire_event_alert(conn, rule, device_id, key, severity, title, now - 60 * n - 5, "fixture")
        alert_ids = [int(i) for i in sql.scalars(conn, "SELECT id FROM alerts ORDER BY id")]
    graphed = ids[0]
    add_history(engine, graphed, now)
    return Fleet(devices=devices, alerts=alert_ids, graphed=graphed, down=down)


def add_history(engine: Engine, device_id: int, now: float, hours: int = 24, step: int = 60) -> None:
    """A day of CPU, memory, round-trip and interface traffic samples, plus the latest values and tables."""
    cache = SeriesCache()
    rows: list[tuple[int, str, str, int, float]] = []
    if_labels = {n: labels_key({"ifIndex": str(n), "ifName": f"Gi1/0/{n}"}) for n in (1, 2)}
    for k in range(hours * 3600 // step):
        ts = int(now - hours * 3600 + k * step)
        phase = k / (hours * 60) * 2 * math.pi
        rows.append((device_id, "cpu_load_pct", "", ts, 35 + 25 * math.sin(phase * 3) + (k % 7)))
        rows.append((device_id, "mem_used_pct", "", ts, 61 + 4 * math.sin(phase)))
        rows.append((device_id, "ping_rtt_ms", labels_key({"check": "ping"}), ts, 2.0 + abs(math.sin(phase * 5)) * 3))
        rows.append((device_id, "if_in_bps", if_labels[1], ts, 4e8 + 3e8 * math.sin(phase * 2)))
        rows.append((device_id, "if_out_bps", if_labels[1], ts, 1e8 + 5e7 * math.cos(phase * 2)))
        rows.append((device_id, "if_in_errors_rate", if_labels[1], ts, 0.0 if k % 97 else 2.5))
    latest = {
        "snmp": [
            ["cpu_load_pct", "", rows[-6][4]],
            ["mem_used_pct", "", rows[-5][4]],
            ["if_in_bps", if_labels[1], rows[-3][4]],
            ["if_out_bps", if_labels[1], rows[-2][4]],
            ["if_in_errors_rate", if_labels[1], 0.0],
            ["if_in_bps", if_labels[2], 1.2e6],
            ["if_in_errors_rate", if_labels[2], 0.5],
        ],
        "ping": [["ping_rtt_ms", labels_key({"check": "ping"}), rows[-4][4]]],
    }
    with engine.begin() as conn:
        write_samples(conn, cache, rows)
        rollup(conn, now)  # what the writer's maintenance does every few minutes: 7 and 30 day graphs read these
        sql.update(
            conn,
            "device_status",
            "device_id = :d",
            {
                "metrics": latest,
                "tables": {
                    "interfaces": _interfaces(8),
                    "storage": [{"descr": "/", "type": "fixed", "used_pct": 71.0, "size_bytes": 64 * 2**30}],
                },
                "checks": {
                    "snmp": {"ok": True, "answered": True, "fails": 0, "kind": "snmp", "ts": now - 20, "ms": 14.0},
                    "ping": {"ok": True, "answered": True, "fails": 0, "kind": "ping", "ts": now - 20, "ms": 3.0},
                },
                "facts": FACTS,
            },
            d=device_id,
        )
        for hours_ago, old, new in ((20, "up", "down"), (19.5, "down", "up")):
            sql.insert(conn, "state_events", device_id=device_id, ts=now - hours_ago * 3600, old_state=old, new_state=new,
                       reason="fixture")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ByteCounter:
    """ASGI wrapper that adds up what the server sends (headers roughly, bodies exactly) and how long it took, per path."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.sent: dict[str, int] = {}
        self.took: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def reset(self) -> None:
        """Forget what was counted."""
        with self.lock:
            self.sent = {}
            self.took = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"] + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
        started = time.perf_counter()

        async def counting(message: dict[str, Any]) -> None:
            size = 0
            if message["type"] == "http.response.start":
                size = 17 + sum(len(k) + len(v) + 4 for k, v in message.get("headers", []))
            elif message["type"] == "http.response.body":
                size = len(message.get("body", b""))
            with self.lock:
                self.sent[path] = self.sent.get(path, 0) + size
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    self.took.setdefault(path, []).append((time.perf_counter() - started) * 1000)
            await send(message)

        await self.app(scope, receive, counting)


@dataclass
class LiveServer:
    """An app served by uvicorn in a thread at http://localhost:PORT (localhost: a secure context for the service worker)."""

    url: str
    app: FastAPI
    svc: Services
    counter: ByteCounter
    stop: Callable[[], None]

    def user(self, name: str, role: str) -> None:
        """Add a user with the test password."""
        with self.svc.engine.begin() as conn:
            passwords.create_user(conn, name, role, PASSWORD)


@contextmanager
def serve_process(data_dir: Path) -> Iterator[str]:
    """The app on an existing data dir in a process of its own (as in production): its URL until the block ends."""
    port = free_port()
    root = Path(__file__).resolve().parent.parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.server.app_fleet", str(data_dir), str(port)], cwd=root, stdin=subprocess.DEVNULL
    )
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        stop_process(proc)


def wait_healthy(url: str, proc: subprocess.Popen[Any], seconds: float = 60.0) -> None:
    """Until the server process at `url` answers /healthz; RuntimeError if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while True:
        if healthz.answers(url):
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the server process did not start (exit {proc.poll()})")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, as an init system would; SIGKILL after 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextmanager
def serve(
    settings: Settings, config: LoadedConfig | None = None, poll: bool = False, port: int | None = None
) -> Iterator[LiveServer]:
    """Run the app until the block ends (live streams are asked to end first, as on SIGTERM)."""
    app = create_app(settings, config, poll=poll)
    counter = ByteCounter(app)
    port = port or free_port()
    server = StreamingServer(
        uvicorn.Config(counter, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5),
        app.state.services,
    )
    thread = threading.Thread(target=server.run, name="pocketnoc-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://localhost:{port}", app, app.state.services, counter, lambda: server.handle_exit(15, None))
    finally:
        server.handle_exit(15, None)  # as SIGTERM does: live streams end first
        thread.join(30)


class Timing:
    """ASGI wrapper for a server process of its own: wall and CPU time from request to last byte, per path.

    GET /__timings answers what was recorded since the last ask (a busy machine stretches wall time; the
    process CPU time of one request at a time is what rendering the page costs).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.took: dict[str, list[tuple[float, float]]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/__timings":
            body = json.dumps(self.took).encode()
            self.took = {}
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wall, cpu = time.perf_counter(), time.process_time()
        path = scope["path"]

        async def timed(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                took = ((time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
                self.took.setdefault(path, []).append(took)

        await self.app(scope, receive, timed)


if __name__ == "__main__":  # python -m tests.server.app_fleet DATA_DIR PORT: serve without polling, timing requests
    uvicorn.run(
        Timing(create_app(Settings(data_dir=Path(sys.argv[1])), poll=False)),
        host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", timeout_graceful_shutdown=2,
    )  # fmt: skip
