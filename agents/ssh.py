"""SSH collector: pinned host keys, pooled paramiko connections, a fixed command set and custom checks."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

import paramiko

from agents import ssh_parsers as p
from agents.base import CollectError, Reading, Sample, SshCredentials, Target, register
from agents.ssh_checks import CheckSpec, CommandResult, error_row, evaluate, parse_check
from agents.ssh_conn import AuthFailed, ChannelOpenFailed, OutputSink, Timeouts, connect, execute
from agents.ssh_hostkeys import HostKeyMismatch, HostKeyUnknown, fingerprint
from agents.ssh_parsers import clean_text

__all__ = [
    "AuthFailed",
    "CommandResult",
    "HostKeyMismatch",
    "HostKeyUnknown",
    "OutputSink",
    "SshCollector",
    "clean_text",
    "fingerprint",
    "run_command",
]

STDOUT_MAX = 256 * 1024
STDERR_MAX = 64 * 1024
IDLE_SECONDS = 300.0
# One logged-in connection per polled host, so a poll never has to log in again (a cap below the host count
# evicts on nearly every poll). Each paramiko transport holds a thread and a socket, hence a ceiling.
MAX_CONNECTIONS = 2048
CHANNELS_PER_COLLECT = 4  # below sshd's default MaxSessions of 10
P = ParamSpec("P")
R = TypeVar("R")

_PoolKey = tuple[str, int, SshCredentials]


def _option(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return float(value) if ok else default


def timeouts(target: Target) -> Timeouts:
    """Stage timeouts from target.timeout, overridable by connect/banner/auth/command_timeout options."""
    base, o = max(target.timeout, 0.1), target.options
    return Timeouts(
        connect=_option(o, "connect_timeout", base),
        banner=_option(o, "banner_timeout", max(base, 10.0)),
        auth=_option(o, "auth_timeout", max(base, 10.0)),
        command=_option(o, "command_timeout", max(base, 30.0)),
    )


@dataclass(eq=False)
class _Conn:
    key: _PoolKey
    transport: paramiko.Transport
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0

    def alive(self) -> bool:
        return self.transport.is_active() and self.transport.is_authenticated()


class _Pool:
    """Logged-in transports keyed by address, port and credentials, closed after idling."""

    def __init__(self, idle_seconds: float, max_size: int) -> None:
        self.idle_seconds = idle_seconds
        self.max_size = max_size
        self.conns: dict[_PoolKey, _Conn] = {}
        self.opened = 0
        # One lock per key, kept for good (one per configured host): pruning one a waiter holds races.
        self._locks: dict[_PoolKey, asyncio.Lock] = {}

    async def acquire(self, target: Target, creds: SshCredentials, t: Timeouts) -> tuple[_Conn, bool]:
        """A live connection for target and whether it was reused; opens one if needed."""
        key = (target.address, target.port, creds)
        await self._expire()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            conn = self.conns.get(key)
            if conn is not None and conn.alive():
                conn.last_used = time.monotonic()
                return conn, True
            if conn is not None:
                await self.discard(conn)
            opening = asyncio.ensure_future(asyncio.to_thread(connect, target.address, target.port, creds, t))
            try:
                transport = await asyncio.shield(opening)
            except asyncio.CancelledError:
                # The thread still finishes its login: close that connection instead of leaking it.
                opening.add_done_callback(_close_when_done)
                raise
            self.opened += 1
            conn = self.conns[key] = _Conn(key, transport)
        while len(self.conns) > self.max_size:
            idle = [c for c in self.conns.values() if not c.busy and c is not conn]
            if not idle:
                break
            await self.discard(min(idle, key=lambda c: c.last_used))
        return conn, False

    async def discard(self, conn: _Conn) -> None:
        """Forget and close one connection."""
        if self.conns.get(conn.key) is conn:
            del self.conns[conn.key]
        await asyncio.to_thread(conn.transport.close)

    async def _expire(self) -> None:
        now = time.monotonic()
        for conn in [c for c in self.conns.values() if not c.busy and now - c.last_used > self.idle_seconds]:
            await self.discard(conn)

    async def close(self) -> None:
        for conn in list(self.conns.values()):
            await self.discard(conn)


class SshCollector:
    """Polls Linux/Unix hosts over SSH, reusing one logged-in connection per host across polls."""

    kind = "ssh"

    def __init__(self, idle_seconds: float = IDLE_SECONDS, max_connections: int = MAX_CONNECTIONS) -> None:
        self._pool = _Pool(idle_seconds, max_connections)
        self._cpu: dict[tuple[str, int, str], p.CpuTimes] = {}

    @property
    def connections_opened(self) -> int:
        """How many connections this collector has opened (reuse shows as a small number)."""
        return self._pool.opened

    async def run_command(
        self,
        target: Target,
        command: str,
        timeout: float = 30.0,  # noqa: ASYNC109 - the remote command's limit, enforced by its reader
        max_bytes: int = STDOUT_MAX,
        on_output: OutputSink | None = None,
    ) -> CommandResult:
        """Run exactly `command` on target (callers quote any parameters) and return what it did.

        on_output, if given, is called from a worker thread with ("stdout" | "stderr", bytes) as output arrives.
        """
        if not command.strip() or "\x00" in command:
            raise ValueError("command must be non-empty and contain no NUL")
        return await self._run(target, command, timeout, max(0, max_bytes), STDERR_MAX, on_output)

    async def _run(
        self, target: Target, command: str, limit: float, max_out: int, max_err: int, on_output: OutputSink | None = None
    ) -> CommandResult:
        if target.ssh is None:
            raise CollectError("no SSH credentials for this target")
        t = timeouts(target)
        for attempt in (1, 2):
            conn, reused = await self._pool.acquire(target, target.ssh, t)
            conn.busy += 1
            try:
                return await asyncio.to_thread(execute, conn.transport, command, limit, max_out, max_err, on_output)
            except ChannelOpenFailed as e:
                if e.dead:
                    await self._pool.discard(conn)
                # A reused connection may have died while idle: reopen it once.
                if not (e.dead and reused and attempt == 1):
                    raise
            except CollectError:
                if not conn.alive():
                    await self._pool.discard(conn)
                raise
            finally:
                conn.busy -= 1
                conn.last_used = time.monotonic()
        raise AssertionError("unreachable")  # pragma: no cover

    async def collect(self, target: Target, profile: str | None = None) -> Reading:
        """One Reading: the fixed command set (unless options["system"] is false) and custom checks."""
        start = time.monotonic()
        if target.ssh is None:
            raise CollectError("no SSH credentials for this target")
        t = timeouts(target)
        checks = self._checks(target, t)
        limit = asyncio.Semaphore(CHANNELS_PER_COLLECT)
        # Connect once up front so connection errors raise instead of becoming check rows.
        await self._pool.acquire(target, target.ssh, t)

        async def run_check(spec: CheckSpec | dict[str, Any]) -> dict[str, Any]:
            if isinstance(spec, dict):
                return spec  # an invalid entry, already an error row
            async with limit:
                try:
                    result = await self._run(target, spec.command, spec.timeout, STDOUT_MAX, STDERR_MAX)
                except CollectError as e:
                    return error_row(spec.name, str(e))
            # Configured regexes run over device output: keep a slow one off the event loop.
            return await asyncio.to_thread(evaluate, spec, result)

        async def run_system() -> CommandResult | None:
            if not target.options.get("system", True):
                return None
            async with limit:
                max_out = int(_option(target.options, "max_output_bytes", STDOUT_MAX))
                return await self._run(target, p.build_script(nonce), t.command, max_out, STDERR_MAX)

        nonce = secrets.token_hex(8)
        system, *rows = await asyncio.gather(run_system(), *(run_check(c) for c in checks))
        reading = Reading()
        if system is not None:
            sections = p.split_sections(system.stdout, nonce)
            if not sections and not rows:
                why = clean_text(system.stderr or system.stdout, 200) or f"exit {system.exit_code}"
                raise CollectError(f"the system commands gave no usable output: {why}")
            self._system(target, sections, reading)
        if target.options.get("commands") is not None:
            reading.tables["commands"] = rows
            for row in rows:
                labels = {"check": row["name"]}
                reading.samples.append(Sample("command_ok", 1.0 if row["ok"] else 0.0, labels))
                if row["value"] is not None:
                    reading.samples.append(Sample("command_value", row["value"], dict(labels)))
        reading.ts = time.time()
        reading.duration = time.monotonic() - start
        for sample in reading.samples:
            sample.ts = reading.ts
        return reading

    def _checks(self, target: Target, t: Timeouts) -> list[CheckSpec | dict[str, Any]]:
        """The configured checks in order; an invalid entry becomes its error row."""
        raw = target.options.get("commands") or []
        out: list[CheckSpec | dict[str, Any]] = []
        for i, entry in enumerate(raw if isinstance(raw, list | tuple) else [raw]):
            try:
                out.append(parse_check(entry, t.command))
            except ValueError as e:
                name = entry.get("name") if isinstance(entry, Mapping) else None
                out.append(error_row(str(name or f"check {i + 1}"), f"invalid check: {e}"))
        return out

    def _system(self, target: Target, sections: dict[str, p.Section], reading: Reading) -> None:
        facts, add = reading.facts, reading.samples.append
        if (text := p.usable(sections.get("hostname"))) is not None and p.first_line(text):
            facts["hostname"] = clean_text(p.first_line(text))
        if (text := p.usable(sections.get("uname"))) is not None and (uname := p.parse_uname(text)):
            facts["os"], facts["kernel"] = clean_text(uname[0]), clean_text(uname[1])
        up = p.parse_uptime(p.usable(sections.get("uptime")) or "")
        if up is not None:
            facts["uptime_seconds"] = up
            add(Sample("uptime_seconds", up))
        if (text := p.usable(sections.get("loadavg"))) is not None and (load := p.parse_loadavg(text)):
            for name, value in zip(("load1", "load5", "load15"), load, strict=True):
                add(Sample(name, value))
        if (text := p.usable(sections.get("meminfo"))) is not None:
            for name, value in p.memory_values(p.parse_meminfo(text)).items():
                add(Sample(name, value))
        self._cpu_samples(target, p.usable(sections.get("stat")), reading)
        systemd = sections.get("systemd")
        # systemctl answers non-zero where systemd is not running: then there is nothing to report.
        if systemd is not None and systemd.rc == 0:
            units = p.parse_failed_units(systemd.text)
            reading.tables["failed_units"] = units
            add(Sample("systemd_failed_units", float(len(units))))
        df = p.usable(sections.get("df"))
        if df is not None:
            mounts = p.parse_mounts(p.usable(sections.get("mounts")) or "")
            inodes = p.parse_df_inodes(p.usable(sections.get("dfi")) or "")
            rows = p.filesystems(p.parse_df(df), inodes, mounts)
            reading.tables["filesystems"] = rows
            for row in rows:
                labels = {"mount": row["mount"]}
                add(Sample("fs_used_pct", row["used_pct"], labels))
                add(Sample("fs_used_bytes", row["used_bytes"], dict(labels)))
                add(Sample("fs_size_bytes", row["size_bytes"], dict(labels)))
                if row["inodes_used_pct"] is not None:
                    add(Sample("fs_inodes_used_pct", row["inodes_used_pct"], dict(labels)))

    def _cpu_samples(self, target: Target, text: str | None, reading: Reading) -> None:
        cur = p.parse_stat(text) if text is not None else None
        if cur is None:
            return
        if cur.count:
            reading.facts["cpu_count"] = cur.count
        key = (target.address, target.port, target.name)
        usage = p.cpu_percent(self._cpu.get(key), cur)
        self._cpu[key] = cur
        if usage is not None:
            reading.samples.append(Sample("cpu_pct", round(usage[0], 2)))
            reading.samples.append(Sample("cpu_iowait_pct", round(usage[1], 2)))

    async def close(self) -> None:
        """Close every pooled connection."""
        await self._pool.close()


def _close_when_done(opening: asyncio.Future[paramiko.Transport]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, opening.result().close)


def _on_fresh_connection(method: Callable[Concatenate[SshCollector, P], Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """`method` of a collector of its own, closed once the call is done: one connection, opened for it."""

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        collector = SshCollector()
        try:
            return await method(collector, *args, **kwargs)
        finally:
            await collector.close()

    return call


run_command = _on_fresh_connection(SshCollector.run_command)
run_command.__doc__ = "Run exactly `command` on target over a fresh connection (for remediation actions), then close it."


register("ssh", SshCollector)
