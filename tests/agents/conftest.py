"""Real peers for the agents tests (snmpd, snmpsim's simulated devices, an sshd per module) and trap receivers to send to."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import pytest

from agents.base import SnmpCredentials, SshCredentials, Target
from agents.ssh import SshCollector
from agents.traps import Trap, TrapReceiver
from tests.peers import traps as tp
from tests.peers.snmpd import SnmpdPeer, start_snmpd
from tests.peers.snmpsim import (
    SnmpsimPeer,
    copy_recorded,
    printer_records,
    start_snmpsim,
    switch_records,
    ups_records,
    write_snmprec,
)
from tests.peers.sshd import SshdPeer


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpdPeer]:
    """A net-snmp snmpd on 127.0.0.1 with communities public/private and v3 users (see DEFAULT_USERS)."""
    peer = start_snmpd(tmp_path_factory.mktemp("snmpd"))
    yield peer
    peer.stop()


@pytest.fixture(scope="session")
def snmpsim_devices(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    """snmpsim serving communities linux-full-walk, winxp-full-walk, switch48, ups, ups-onbattery, printer."""
    root = tmp_path_factory.mktemp("snmpsim")
    data = root / "data"
    copy_recorded(data, "linux-full-walk", "winxp-full-walk")
    write_snmprec(data / "switch48.snmprec", switch_records(48))
    write_snmprec(data / "ups.snmprec", ups_records())
    write_snmprec(data / "ups-onbattery.snmprec", ups_records(on_battery=True))
    write_snmprec(data / "printer.snmprec", printer_records())
    peer = start_snmpsim(data, workdir=root / "work")
    yield peer
    peer.stop()


# --- sshd and the SSH collector ------------------------------------------------------------------


@pytest.fixture
async def collector() -> AsyncIterator[SshCollector]:
    """An SSH collector, closed (with its pooled connections) after the test."""
    c = SshCollector()
    yield c
    await c.close()


def target(peer: SshdPeer, port: int | None = None, pins: tuple[str, ...] | None = None, **kw: Any) -> Target:
    """A target on `peer` pinned to its host key (or `pins`), signing in with its ed25519 key unless `kw` says otherwise."""
    options = kw.pop("options", {})
    creds = kw or {"key_file": peer.key_path}
    host_keys = (peer.host_key_line,) if pins is None else pins
    ssh = SshCredentials(user=peer.user, host_keys=host_keys, **creds)
    return Target("127.0.0.1", port or peer.port, "test", ssh=ssh, timeout=5.0, options=options)


def remote_pids(peer: SshdPeer, pattern: str) -> list[str]:
    """Pids of the test user's processes whose command line matches `pattern`."""
    found = subprocess.run(["pgrep", "-u", peer.user, "-f", pattern], capture_output=True, text=True)
    return found.stdout.split()


async def wait_for(predicate: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Whether `predicate` came true within `seconds` (checked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


# --- trap receivers ----------------------------------------------------------------------------

COLD, WARM, LINK_DOWN, LINK_UP = (f"1.3.6.1.6.3.1.1.5.{n}" for n in (1, 2, 3, 4))
IF_INDEX = "1.3.6.1.2.1.2.2.1.1"
ENTERPRISE = "1.3.6.1.4.1.99999"
USERS = [
    SnmpCredentials("3", user="mon", auth_protocol="sha", auth_key="authpass123", priv_protocol="aes", priv_key="privpass123"),
    SnmpCredentials(
        "3", user="mon256", auth_protocol="sha256", auth_key="authpass256", priv_protocol="aes256", priv_key="privpass256"
    ),
    SnmpCredentials("3", user="monauth", auth_protocol="sha512", auth_key="authpass512"),
]
Start = Callable[..., Awaitable[tuple[TrapReceiver, list[Trap]]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start receivers on 127.0.0.1:<free port> collecting traps into a list; all stopped afterwards."""
    running: list[TrapReceiver] = []

    async def _start(**kwargs: Any) -> tuple[TrapReceiver, list[Trap]]:
        got: list[Trap] = []
        kwargs.setdefault("on_trap", got.append)
        receiver = TrapReceiver(
            kwargs.pop("host", "127.0.0.1"), 0, kwargs.pop("communities", ["public"]), kwargs.pop("v3_users", USERS), **kwargs
        )
        await receiver.start()
        running.append(receiver)
        return receiver, got

    yield _start
    for receiver in running:
        await receiver.stop()


async def send(args: Sequence[str]) -> float:
    """Run a net-snmp sender in a thread (the receiver shares this loop); return its run time."""
    started = time.monotonic()
    await asyncio.to_thread(tp.send, args)
    return time.monotonic() - started


async def until(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until `check` is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def settle(receiver: TrapReceiver, quiet: float = 0.5) -> None:
    """Wait until the receiver has seen no datagram for `quiet` seconds."""
    last, since = -1, time.monotonic()
    while time.monotonic() - since < quiet:
        if receiver.counts.received != last:
            last, since = receiver.counts.received, time.monotonic()
        await asyncio.sleep(0.05)
