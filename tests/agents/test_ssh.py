"""The SSH collector against a real OpenSSH sshd on loopback (and hostile fake servers)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import socket
import subprocess
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from paramiko.common import AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from agents.base import REGISTRY, CollectError, SshCredentials, Target, Unreachable
from agents.ssh import AuthFailed, HostKeyMismatch, HostKeyUnknown, SshCollector, run_command
from tests.peers.sshd import SshdPeer, free_port, start_sshd

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPeer]:
    peer = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def other_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdPeer]:
    """A second server with its own host key: what an attacker in the middle would present."""
    peer = start_sshd(tmp_path_factory.mktemp("sshd-other"))
    yield peer
    peer.stop()


@pytest.fixture
async def collector() -> AsyncIterator[SshCollector]:
    c = SshCollector()
    yield c
    await c.close()


def target(peer: SshdPeer, port: int | None = None, pins: tuple[str, ...] | None = None, **kw: Any) -> Target:
    options = kw.pop("options", {})
    creds = kw or {"key_file": peer.key_path}
    host_keys = (peer.host_key_line,) if pins is None else pins
    ssh = SshCredentials(user=peer.user, host_keys=host_keys, **creds)
    return Target("127.0.0.1", port or peer.port, "test", ssh=ssh, timeout=5.0, options=options)


def remote_pids(peer: SshdPeer, pattern: str) -> list[str]:
    found = subprocess.run(["pgrep", "-u", peer.user, "-f", pattern], capture_output=True, text=True)
    return found.stdout.split()


async def wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


# --- authentication -----------------------------------------------------------------------------


async def test_registered() -> None:
    assert REGISTRY["ssh"] is SshCollector


async def test_ed25519_key(sshd: SshdPeer, collector: SshCollector) -> None:
    result = await collector.run_command(target(sshd), "id -un")
    assert result.exit_code == 0 and result.stdout == f"{sshd.user}\n".encode()
    assert "Accepted publickey" in sshd.log_text()


async def test_rsa_key(sshd: SshdPeer, collector: SshCollector) -> None:
    result = await collector.run_command(target(sshd, key_file=sshd.rsa_key_path), "echo rsa")
    assert result.stdout == b"rsa\n"
    assert re.search(r"Accepted publickey for pnoc-test .* RSA SHA256:", sshd.log_text())


async def test_passphrase_key_from_file_and_from_data(sshd: SshdPeer, collector: SshCollector) -> None:
    t = target(sshd, key_file=sshd.passphrase_key_path, key_passphrase=sshd.passphrase)
    assert (await collector.run_command(t, "echo file")).stdout == b"file\n"
    data = Path(sshd.passphrase_key_path).read_text()
    t = target(sshd, key_data=data, key_passphrase=sshd.passphrase)
    assert (await collector.run_command(t, "echo data")).stdout == b"data\n"
    with pytest.raises(CollectError, match="cannot load SSH key"):
        await collector.run_command(target(sshd, key_data=data, key_passphrase="wrong"), "true")
    with pytest.raises(CollectError, match="cannot load SSH key"):
        await collector.run_command(target(sshd, key_data=data), "true")


async def test_password(sshd: SshdPeer, collector: SshCollector) -> None:
    result = await collector.run_command(target(sshd, password=sshd.password), "echo pw")
    assert result.stdout == b"pw\n"
    assert "Accepted password for pnoc-test" in sshd.log_text()


async def test_wrong_password(sshd: SshdPeer, collector: SshCollector) -> None:
    with pytest.raises(AuthFailed) as failed:
        await collector.run_command(target(sshd, password="not-the-password"), "true")
    assert isinstance(failed.value, CollectError) and not isinstance(failed.value, Unreachable)
    assert await wait_for(lambda: "Failed password for pnoc-test" in sshd.log_text())


# --- host keys ----------------------------------------------------------------------------------


def _ssh_keygen_fingerprint(key_line: str, tmp_path: Path) -> str:
    pub = tmp_path / "key.pub"
    pub.write_text(key_line + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


async def test_unpinned_host_key_is_offered_not_trusted(sshd: SshdPeer, collector: SshCollector, tmp_path: Path) -> None:
    before = sshd.count("Failed password") + sshd.count("Accepted")
    with pytest.raises(HostKeyUnknown) as unknown:
        await collector.run_command(target(sshd, pins=(), password=sshd.password), "true")
    assert unknown.value.key_line == sshd.host_key_line
    assert unknown.value.fingerprint == _ssh_keygen_fingerprint(sshd.host_key_line, tmp_path)
    assert sshd.count("Failed password") + sshd.count("Accepted") == before


async def test_pinned_fingerprint_is_accepted(sshd: SshdPeer, collector: SshCollector, tmp_path: Path) -> None:
    fp = _ssh_keygen_fingerprint(sshd.host_key_line, tmp_path)
    assert (await collector.run_command(target(sshd, pins=(fp,)), "echo ok")).stdout == b"ok\n"


async def test_substituted_host_key_refused_before_auth(sshd: SshdPeer, other_sshd: SshdPeer, collector: SshCollector) -> None:
    # The real password, sent to a server presenting another key: it must never leave.
    t = target(sshd, port=other_sshd.port, password=sshd.password)
    with pytest.raises(HostKeyMismatch) as mismatch:
        await collector.run_command(t, "true")
    assert mismatch.value.key_line == other_sshd.host_key_line
    assert mismatch.value.offered != mismatch.value.expected[0]
    # Wait until sshd has logged the end of that connection, then look for any auth attempt.
    assert await wait_for(lambda: "[preauth]" in other_sshd.log_text())
    log = other_sshd.log_text()
    assert "Connection from 127.0.0.1" in log
    assert not re.search(r"Failed|Accepted|Postponed|userauth|Invalid user", log)


async def test_pinned_key_of_another_type_is_refused(sshd: SshdPeer, collector: SshCollector, tmp_path: Path) -> None:
    rsa_server = start_sshd(tmp_path, host_key_type="rsa")
    try:
        with pytest.raises(HostKeyMismatch):
            await collector.run_command(target(sshd, port=rsa_server.port, password=sshd.password), "true")
        assert "Failed password" not in rsa_server.log_text()
        ok = await collector.run_command(target(rsa_server, pins=(rsa_server.host_key_line,)), "echo rsa")
        assert ok.stdout == b"rsa\n"
    finally:
        rsa_server.stop()


# --- unreachable and hostile servers ------------------------------------------------------------


async def test_dead_port_is_unreachable_fast(sshd: SshdPeer, collector: SshCollector) -> None:
    start = time.monotonic()
    with pytest.raises(Unreachable):
        await collector.collect(target(sshd, port=free_port()))
    assert time.monotonic() - start < 3


@contextlib.asynccontextmanager
async def fake_server(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    writers: list[asyncio.StreamWriter] = []

    async def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handler(reader, writer)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in writers:
            writer.close()


async def test_silent_server_is_bounded_by_banner_timeout(sshd: SshdPeer, collector: SshCollector) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 20):  # says nothing more until the client hangs up
                pass

    async with fake_server(silent) as port:
        start = time.monotonic()
        with pytest.raises(Unreachable, match="no SSH banner"):
            await collector.collect(target(sshd, port=port, options={"banner_timeout": 1.5}))
        assert 1.0 < time.monotonic() - start < 6


async def test_server_silent_after_banner_is_bounded(sshd: SshdPeer, collector: SshCollector) -> None:
    async def banner_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1\r\n")
        with contextlib.suppress(ConnectionError):
            while await reader.read(1 << 20):  # says nothing more until the client hangs up
                pass

    async with fake_server(banner_only) as port:
        start = time.monotonic()
        with pytest.raises(Unreachable, match="timed out"):
            await collector.collect(target(sshd, port=port, options={"banner_timeout": 1.5}))
        assert 1.0 < time.monotonic() - start < 6


@pytest.mark.parametrize(
    "chunk",
    [
        b"x" * 65536,  # one endless banner line
        b"Welcome, this is not SSH\r\n" * 1000,  # endless pre-banner lines
        b"SSH-2.0-evil\r\n" + b"\x00\x00\x00\x0c\x0a\x02" + b"\x00" * 10,  # banner, then endless packets
    ],
)
async def test_flooding_server_is_bounded(sshd: SshdPeer, collector: SshCollector, chunk: bytes) -> None:
    sent = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            while sent < 2_000_000_000:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)

    async with fake_server(flood) as port:
        tracemalloc.start()
        start = time.monotonic()
        try:
            with pytest.raises(CollectError) as error:
                await collector.collect(target(sshd, port=port, options={"banner_timeout": 5}))
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.monotonic() - start < 10
        assert peak < 16 * 1024 * 1024
        assert sent < 64 * 1024 * 1024
        assert "127.0.0.1" in str(error.value)


# --- the fixed command set ----------------------------------------------------------------------


async def test_full_reading(sshd: SshdPeer, collector: SshCollector) -> None:
    first = await collector.collect(target(sshd))
    metrics = {s.metric for s in first.samples}
    assert {"load1", "load5", "load15", "mem_total_bytes", "mem_used_bytes", "mem_used_pct"} <= metrics
    assert {"swap_total_bytes", "uptime_seconds", "fs_used_pct", "fs_size_bytes", "fs_used_bytes"} <= metrics
    assert "cpu_pct" not in metrics  # no previous /proc/stat yet
    facts = first.facts
    assert facts["hostname"] == subprocess.run(["hostname"], capture_output=True, text=True).stdout.strip()
    assert facts["os"] == "Linux" and facts["kernel"] and facts["uptime_seconds"] > 0
    rows = {r["mount"]: r for r in first.tables["filesystems"]}
    assert "/" in rows and rows["/"]["size_bytes"] > 0 and 0 <= rows["/"]["used_pct"] <= 100
    assert all(r["fstype"] not in ("tmpfs", "devtmpfs", "proc", "sysfs", "overlay") for r in rows.values())
    assert 0 < next(s.value for s in first.samples if s.metric == "mem_used_pct") < 100
    fs = [s for s in first.samples if s.metric == "fs_used_pct"]
    assert {s.labels["mount"] for s in fs} == set(rows)
    # This container runs no systemd: systemctl fails, so there is no failed-unit count to report.
    assert "systemd_failed_units" not in metrics and "failed_units" not in first.tables
    # Busy-loop a CPU between polls so the delta is measurable on a quiet machine.
    await collector.run_command(target(sshd), "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
    second = await collector.collect(target(sshd))
    cpu = {s.metric: s.value for s in second.samples if s.metric.startswith("cpu_")}
    assert 0 < cpu["cpu_pct"] <= 100 and 0 <= cpu["cpu_iowait_pct"] <= 100
    assert second.facts["cpu_count"] >= 1


async def test_connection_reused_across_collects(sshd: SshdPeer, collector: SshCollector) -> None:
    before = sshd.count("Accepted publickey")
    commands = [{"name": "a", "command": "true"}, {"name": "b", "command": "true"}]
    t = target(sshd, options={"commands": commands})
    await collector.collect(t)
    await collector.collect(t)
    assert collector.connections_opened == 1
    assert sshd.count("Accepted publickey") == before + 1


async def test_dead_connection_is_reopened(sshd: SshdPeer, collector: SshCollector) -> None:
    t = target(sshd)
    pid = (await collector.run_command(t, "echo $PPID")).stdout.decode().strip()
    # Kill our connection's sshd session process: the pooled transport is now dead.
    subprocess.run(["kill", "-9", pid], check=True)
    reading = await collector.collect(t)
    assert reading.facts["hostname"]
    assert collector.connections_opened == 2


async def test_connection_lost_mid_command_raises(sshd: SshdPeer, collector: SshCollector) -> None:
    t = target(sshd)
    pid = (await collector.run_command(t, "echo $PPID")).stdout.decode().strip()
    seconds = 700 + secrets.randbelow(10_000)
    task = asyncio.create_task(collector.run_command(t, f"sleep {seconds}", timeout=60))
    try:
        assert await wait_for(lambda: bool(remote_pids(sshd, f"sleep {seconds}")))
        subprocess.run(["kill", "-9", pid], check=True)
        with pytest.raises(CollectError, match="lost"):
            await task
    finally:
        for orphan in remote_pids(sshd, f"sleep {seconds}"):
            subprocess.run(["kill", orphan], check=False)
    assert (await collector.run_command(t, "echo back")).stdout == b"back\n"


async def test_half_open_connection_is_reopened_once(sshd: SshdPeer, collector: SshCollector) -> None:
    t = target(sshd)
    pid = (await collector.run_command(t, "echo $PPID")).stdout.decode().strip()
    # A frozen session process: the kernel still ACKs, but nothing answers (like a dropped NAT entry).
    subprocess.run(["kill", "-STOP", pid], check=True)
    try:
        result = await collector.run_command(t, "echo again", timeout=3)
        assert result.stdout == b"again\n"
        assert collector.connections_opened == 2
    finally:
        subprocess.run(["kill", "-CONT", pid], check=False)
        subprocess.run(["kill", pid], check=False)


async def test_concurrent_first_collects_share_one_connection(sshd: SshdPeer, collector: SshCollector) -> None:
    readings = await asyncio.gather(*(collector.collect(target(sshd)) for _ in range(4)))
    assert all(r.facts["hostname"] for r in readings)
    assert collector.connections_opened == 1


async def test_idle_connection_expires(sshd: SshdPeer) -> None:
    c = SshCollector(idle_seconds=0.3)
    try:
        await c.run_command(target(sshd), "true")
        first = next(iter(c._pool.conns.values())).transport
        await asyncio.sleep(0.6)
        await c.run_command(target(sshd), "true")
        assert c.connections_opened == 2 and not first.is_active()
    finally:
        await c.close()


def ended(peer: SshdPeer) -> int:
    """How many connections sshd has seen end, however they ended."""
    endings = ("Read error from remote host", "Connection closed by", "Disconnected from", "Received disconnect")
    return sum(peer.count(e) for e in endings)


async def test_cancelled_connect_does_not_leak_the_connection(sshd: SshdPeer, collector: SshCollector) -> None:
    accepted, closed = sshd.count("Accepted publickey"), ended(sshd)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(collector.run_command(target(sshd), "true"), 0.005)
    # The login finishes in its thread, then that connection is closed rather than left open.
    assert await wait_for(lambda: sshd.count("Accepted publickey") > accepted)
    assert await wait_for(lambda: ended(sshd) > closed)
    assert collector.connections_opened == 0


async def test_close_closes_connections(sshd: SshdPeer) -> None:
    c = SshCollector()
    await c.run_command(target(sshd), "true")
    transports = [conn.transport for conn in c._pool.conns.values()]
    assert transports and all(tr.is_active() for tr in transports)
    await c.close()
    assert not any(tr.is_active() for tr in transports)


async def test_module_run_command_uses_a_fresh_connection(sshd: SshdPeer) -> None:
    result = await run_command(target(sshd), "echo out; echo err >&2; exit 7")
    assert (result.exit_code, result.stdout, result.stderr) == (7, b"out\n", b"err\n")
    assert not result.truncated and not result.timed_out and result.duration > 0


# --- custom checks ------------------------------------------------------------------------------


async def test_custom_checks(sshd: SshdPeer, collector: SshCollector) -> None:
    queue = {"value_regex": r"queue=(\S+)", "warn": 10, "crit": 20}
    commands = [
        {"name": "exit-ok", "command": "exit 0"},
        {"name": "exit-bad", "command": "exit 3"},
        {"name": "exit-expected", "command": "exit 3", "expect_exit": 3},
        {"name": "regex-hit", "command": "echo service is running", "regex": "is running$"},
        {"name": "regex-miss", "command": "echo service is stopped", "regex": "is running"},
        {"name": "v-ok", "command": "echo queue=3", **queue},
        {"name": "v-warn", "command": "echo queue=12", **queue},
        {"name": "v-crit", "command": "echo queue=25.5", **queue},
        {"name": "v-none", "command": "echo nothing", "value_regex": r"queue=(\d+)"},
        {"name": "missing", "command": "no-such-command-pnoc"},
        {"name": "broken", "command": "true", "regex": "("},
    ]
    reading = await collector.collect(target(sshd, options={"commands": commands}))
    rows = {r["name"]: r for r in reading.tables["commands"]}
    status = {name: row["status"] for name, row in rows.items()}
    assert status == {
        "exit-ok": "ok",
        "exit-bad": "critical",
        "exit-expected": "ok",
        "regex-hit": "ok",
        "regex-miss": "critical",
        "v-ok": "ok",
        "v-warn": "warning",
        "v-crit": "critical",
        "v-none": "error",
        "missing": "critical",
        "broken": "error",
    }
    assert rows["missing"]["exit_code"] == 127 and "not found" in rows["missing"]["output"]
    assert rows["v-crit"]["value"] == 25.5 and rows["exit-bad"]["exit_code"] == 3
    assert all(row["ok"] == (row["status"] == "ok") for row in rows.values())
    assert all(row["duration_s"] >= 0 for row in rows.values())
    values = {s.labels["check"]: s.value for s in reading.samples if s.metric == "command_value"}
    assert values == {"v-ok": 3.0, "v-warn": 12.0, "v-crit": 25.5}
    oks = {s.labels["check"]: s.value for s in reading.samples if s.metric == "command_ok"}
    assert oks["exit-ok"] == 1.0 and oks["exit-bad"] == 0.0 and len(oks) == len(commands)
    assert "load1" in {s.metric for s in reading.samples}  # the fixed set ran alongside


async def test_hostile_output_is_sanitized(sshd: SshdPeer, collector: SshCollector) -> None:
    command = r"printf '\033[31mred\033[0m \033]0;pwned\007<b>bold</b> & ok\rFAKE\n\377\376\000end\033P+q\033\\'"
    reading = await collector.collect(target(sshd, options={"system": False, "commands": [{"name": "h", "command": command}]}))
    row = reading.tables["commands"][0]
    assert row["output"] == "red <b>bold</b> & ok\nFAKE\n\ufffd\ufffdend"
    assert row["status"] == "ok"


async def test_huge_output_is_capped(sshd: SshdPeer, collector: SshCollector) -> None:
    size = 100_000_000 + secrets.randbelow(1000)  # unique, to find this run's processes
    command = f"head -c {size} /dev/zero | tr '\\0' x"
    tracemalloc.start()
    start = time.monotonic()
    try:
        result = await collector.run_command(target(sshd), command, timeout=60, max_bytes=256 * 1024)
        reading = await collector.collect(
            target(sshd, options={"system": False, "commands": [{"name": "big", "command": command}]})
        )
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.truncated and not result.timed_out
    assert result.stdout == b"x" * (256 * 1024)
    assert reading.tables["commands"][0]["output"] == "x" * 4096
    assert reading.tables["commands"][0]["status"] == "error"  # stopped: its exit status is unknown
    assert time.monotonic() - start < 20
    assert peak < 32 * 1024 * 1024
    # The writer was killed, not left running on the server.
    assert await wait_for(lambda: not remote_pids(sshd, f"head -c {size}"))


async def test_endless_command_times_out_and_is_killed(sshd: SshdPeer, collector: SshCollector) -> None:
    seconds = 600 + secrets.randbelow(10_000)
    command = f"echo started; sleep {seconds}"
    start = time.monotonic()
    result = await collector.run_command(target(sshd), command, timeout=1.5)
    assert result.timed_out and result.exit_code is None and result.stdout == b"started\n"
    assert time.monotonic() - start < 10
    assert await wait_for(lambda: not remote_pids(sshd, f"sleep {seconds}"))
    reading = await collector.collect(
        target(sshd, options={"system": False, "commands": [{"name": "s", "command": command, "timeout": 1}]})
    )
    row = reading.tables["commands"][0]
    assert row["status"] == "error" and row["exit_code"] is None
    assert await wait_for(lambda: not remote_pids(sshd, f"sleep {seconds}"))
    # The connection survives a killed command.
    assert (await collector.run_command(target(sshd), "echo alive")).stdout == b"alive\n"


class _StallingServer(paramiko.ServerInterface):
    """Logs anyone in with a password and opens sessions, then never answers an exec request."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def get_allowed_auths(self, username: str) -> str:
        return "password"

    def check_auth_password(self, username: str, password: str) -> int:
        return AUTH_SUCCESSFUL

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        self.release.wait(60)  # holds the server's transport thread: no answer, no other packet
        return False


async def test_exec_request_never_answered_is_bounded() -> None:
    host_key = paramiko.RSAKey.generate(2048)  # made for this run only
    release = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    transports: list[paramiko.Transport] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            server = paramiko.Transport(conn)
            transports.append(server)
            server.add_server_key(host_key)
            server.start_server(server=_StallingServer(release))

    threading.Thread(target=accept, daemon=True).start()
    pin = f"{host_key.get_name()} {host_key.get_base64()}"
    ssh = SshCredentials(user="anyone", password="x", host_keys=(pin,))
    collector = SshCollector()
    try:
        start = time.monotonic()
        with pytest.raises(CollectError, match="did not start the command"):
            await collector.run_command(Target("127.0.0.1", port, "test", ssh=ssh, timeout=5.0), "true", timeout=2.0)
        assert time.monotonic() - start < 10
    finally:
        release.set()
        await collector.close()
        listener.close()
        for server in transports:
            server.close()
