"""The SSH collector's pooled connections to a real sshd: reused, reopened when dead or frozen, expired, closed."""

from __future__ import annotations

import asyncio
import secrets
import subprocess

import pytest

from agents.base import CollectError
from agents.ssh import SshCollector, run_command
from tests.agents.conftest import remote_pids, target, wait_for
from tests.peers.sshd import SshdPeer

pytestmark = pytest.mark.timeout(120)


# --- connections -------------------------------------------------------------------------------


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
