"""The SSH collector signing in to a real OpenSSH sshd on loopback, and bounded against dead and hostile servers."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import paramiko
import pytest
from paramiko.common import AUTH_SUCCESSFUL, OPEN_SUCCEEDED

from agents.base import REGISTRY, CollectError, SshCredentials, Target, Unreachable
from agents.ssh import AuthFailed, SshCollector
from tests.agents.conftest import target, wait_for
from tests.peers.sshd import SshdPeer, free_port

pytestmark = pytest.mark.timeout(120)


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
