"""ping and tcp collectors against the real kernel on loopback (http: test_net_http.py)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.base import REGISTRY, CollectError, Reading, Target, Unreachable
from agents.net import PingCollector, TcpCollector
from agents.net_ping import _V4, PING_GROUP_RANGE, build_echo, parse_echo_reply
from tests.peers.http_servers import closed_port

REPO = Path(__file__).resolve().parents[2]


def values(reading: Reading) -> dict[str, float]:
    return {s.metric: s.value for s in reading.samples}


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


# ---------------------------------------------------------------- ping


async def ping_or_skip(address: str, **options: Any) -> Reading:
    try:
        target = Target(address, 0, timeout=5.0, options={"interval": 0.05} | options)
        return await PingCollector().collect(target)
    except CollectError as exc:
        if "not permitted" in str(exc):
            pytest.skip(f"this process may not ping (not root, ping_group_range excludes it): {exc}")
        raise


async def test_ping_ipv4_loopback() -> None:
    reading = await ping_or_skip("127.0.0.1", count=4)
    v = values(reading)
    assert v["ping_loss_pct"] == 0.0
    assert 0 < v["ping_rtt_min_ms"] <= v["ping_rtt_ms"] <= v["ping_rtt_max_ms"] < 5000
    assert reading.facts["ping_address"] == "127.0.0.1"
    assert reading.facts["ping_method"] in ("raw", "dgram")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this machine")
async def test_ping_ipv6_loopback() -> None:
    reading = await ping_or_skip("::1")
    assert values(reading)["ping_loss_pct"] == 0.0
    assert reading.facts["ping_address"] == "::1"


async def test_ping_dns_name() -> None:
    reading = await ping_or_skip("localhost", count=2)
    assert values(reading)["ping_loss_pct"] == 0.0
    assert reading.facts["ping_address"] in ("127.0.0.1", "::1")


async def test_concurrent_pings_keep_their_own_replies() -> None:
    readings = await asyncio.gather(*(ping_or_skip("127.0.0.1", count=5) for _ in range(6)))
    assert all(values(r)["ping_loss_pct"] == 0.0 for r in readings)


async def test_ping_unresolvable_name_is_unreachable() -> None:
    with pytest.raises(Unreachable, match="cannot resolve"):
        await PingCollector().collect(Target("does-not-exist.invalid", 0))


def test_echo_packet_round_trip() -> None:
    token = b"12345678"
    packet = build_echo(_V4, 0x1234, 7, token, raw=True)
    words = [int.from_bytes(packet[i : i + 2], "big") for i in range(0, len(packet), 2)]
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF  # a valid Internet checksum sums to all ones
    reply = bytes([0]) + packet[1:]  # type 0: echo reply, as the kernel delivers it on a datagram socket
    assert parse_echo_reply(_V4, reply, 0x1234, token, raw=False) == 7
    assert parse_echo_reply(_V4, reply, 0x1234, b"87654321", raw=False) is None
    assert parse_echo_reply(_V4, packet, 0x1234, token, raw=False) is None  # our own request, not a reply
    assert parse_echo_reply(_V4, b"\x00\x01", 0x1234, token, raw=True) is None


# The unprivileged path and the failure paths run in a private network namespace (only its own lo),
# so the host's sysctls stay untouched; the child drops CAP_NET_RAW so raw sockets are impossible.
NETNS_SCRIPT = """
import asyncio, json, sys
from agents.base import CollectError, Target
from agents.net_ping import PingCollector
async def main():
    out = {}
    for address in sys.argv[1:]:
        try:
            target = Target(address, 0, timeout=2.0, options={"interval": 0.05})
            reading = await PingCollector().collect(target)
            out[address] = {"method": reading.facts["ping_method"], "loss": reading.samples[0].value}
        except CollectError as exc:
            out[address] = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out))
asyncio.run(main())
"""


def run_in_netns(setup: str, *addresses: str, drop_net_raw: bool = True) -> dict[str, Any]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a private network namespace (unshare -n)")
    if not (shutil.which("unshare") and shutil.which("setpriv") and shutil.which("ip")):
        pytest.skip("needs unshare, setpriv and ip (util-linux, iproute2)")
    drop = "setpriv --bounding-set=-net_raw --inh-caps=-net_raw " if drop_net_raw else ""
    command = f'{setup} exec {drop}"$0" -c "$1" "$@"'
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", command, sys.executable, NETNS_SCRIPT, *addresses],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )
    if proc.returncode != 0 and "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip(f"network namespaces not permitted here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_ping_unprivileged_datagram_socket() -> None:
    out = run_in_netns(
        f"ip link set lo up && echo '0 2147483647' > {PING_GROUP_RANGE} &&", "127.0.0.1", "::1"
    )
    assert out["127.0.0.1"] == {"method": "dgram", "loss": 0.0}
    if "error" not in out["::1"]:  # ::1 may be absent when IPv6 is disabled
        assert out["::1"] == {"method": "dgram", "loss": 0.0}


def test_ping_not_permitted_explains_the_sysctl() -> None:
    out = run_in_netns(f"ip link set lo up && echo '1 0' > {PING_GROUP_RANGE} &&", "127.0.0.1")
    assert out["127.0.0.1"]["error"] == "CollectError"
    assert "sysctl -w net.ipv4.ping_group_range=" in out["127.0.0.1"]["message"]
    assert "CAP_NET_RAW" in out["127.0.0.1"]["message"]


def test_ping_all_lost_is_unreachable() -> None:
    # 127.0.0.0/8 always answers on Linux, so "no answer" needs a namespace whose lo is down.
    out = run_in_netns("", "127.0.0.1", drop_net_raw=False)
    assert out["127.0.0.1"]["error"] == "Unreachable"
    assert "100% loss" in out["127.0.0.1"]["message"]


# ---------------------------------------------------------------- tcp


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)  # never accepts: the kernel still completes handshakes into the backlog
    yield sock
    sock.close()


async def test_tcp_connect_ok(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    reading = await TcpCollector().collect(Target("127.0.0.1", port, timeout=5.0))
    v = values(reading)
    assert v["tcp_ok"] == 1.0
    assert 0 <= v["tcp_connect_ms"] < 5000
    assert reading.facts == {"tcp_address": "127.0.0.1", "tcp_port": port}


async def test_tcp_port_option_and_dns_name(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    reading = await TcpCollector().collect(Target("localhost", 1, timeout=5.0, options={"port": port}))
    assert values(reading)["tcp_ok"] == 1.0
    assert reading.facts["tcp_port"] == port


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no ::1 on this machine")
async def test_tcp_ipv6() -> None:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::1", 0))
        sock.listen(1)
        reading = await TcpCollector().collect(Target("[::1]", sock.getsockname()[1], timeout=5.0))
    assert reading.facts["tcp_address"] == "::1"


async def test_tcp_refused() -> None:
    with pytest.raises(Unreachable, match="connection refused"):
        await TcpCollector().collect(Target("127.0.0.1", closed_port(), timeout=5.0))


async def test_tcp_timeout_when_backlog_full(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):  # a full accept queue makes the kernel drop further SYNs
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(Unreachable, match=r"no answer within 0\.5 s"):
            await TcpCollector().collect(Target("127.0.0.1", port, timeout=0.5))
        assert time.monotonic() - started < 5
    finally:
        for filler in fillers:
            filler.close()


async def test_tcp_needs_a_port() -> None:
    with pytest.raises(CollectError, match="needs a port"):
        await TcpCollector().collect(Target("127.0.0.1", 0))


def test_all_three_kinds_registered() -> None:
    assert {"ping", "tcp", "http"} <= set(REGISTRY)
    assert REGISTRY["http"]().kind == "http"
