"""Partial answers are not outages: agents that stay silent on some requests, served by snmpsim from our own recordings.

tests/agents/recordings/ holds two small recordings written for these cases (not copies of anyone's data):
- one-bad-oid: a Linux host whose HOST-RESOURCES part breaks on hrSystemUptime (an OID snmpsim cannot
  parse sits there): any request that touches it gets no answer at all, like an agent with a broken sub-agent;
- big-value: a switch with a 65,000-byte ifAlias: alone it fits one datagram, with the other columns' rows it cannot.
Neither has the ifIndex column (many real agents and recordings omit it).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agents.base import SnmpCredentials, Target, Unreachable
from agents.snmp import SnmpClient, SnmpCollector
from agents.snmp_values import TEXT_CAP
from tests.peers.snmpd import free_udp_port
from tests.peers.snmpsim import SnmpsimPeer, start_snmpsim

pytestmark = pytest.mark.timeout(120)

RECORDINGS = Path(__file__).parent / "recordings"
SYS_NAME, HR_UPTIME = "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.25.1.1.0"
IF_NAME, IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.31.1.1.1.18"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SnmpsimPeer]:
    peer = start_snmpsim(RECORDINGS, workdir=tmp_path_factory.mktemp("partial"))
    yield peer
    peer.stop()


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    c = SnmpClient()
    yield c
    await c.close()


def target(sim: SnmpsimPeer, community: str) -> Target:
    return Target(sim.address, sim.port, snmp=SnmpCredentials("2c", community), timeout=0.5, retries=0)


async def test_the_recordings_really_stay_silent(sim: SnmpsimPeer, client: SnmpClient) -> None:
    """The quirks the collector must live with: silence for a whole request, though each other part answers."""
    assert (await client.get(target(sim, "one-bad-oid"), [SYS_NAME]))[SYS_NAME] == "partial1"
    with pytest.raises(Unreachable):
        await client.get(target(sim, "one-bad-oid"), [SYS_NAME, HR_UPTIME])
    with pytest.raises(Unreachable):
        await client.walk_columns(target(sim, "big-value"), [IF_NAME, IF_ALIAS])


async def test_one_bad_oid_is_a_warning_not_an_outage(sim: SnmpsimPeer, client: SnmpClient) -> None:
    collector = SnmpCollector(client)
    for _ in range(2):  # the first poll detects, the second runs the cached plan without the silent OID
        reading = await collector.collect(target(sim, "one-bad-oid"))
        assert reading.facts["sys_name"] == "partial1" and reading.facts["kind"] == "linux"
        assert "host" in reading.facts["profiles"]
        rows = reading.tables["interfaces"]
        assert [(r["index"], r["name"], r["oper"]) for r in rows] == [(1, "eth1", "up"), (2, "eth2", "up"), (3, "eth3", "down")]
        assert [r["descr"] for r in reading.tables["storage"]] == ["/"]
        assert any(s.metric == "cpu_load_pct" and s.value == 7 for s in reading.samples)
        (warning,) = reading.facts["warnings"]
        assert "hr_system_uptime" in warning and "sys_name" not in warning


async def test_a_65_kb_value_is_read_column_by_column(sim: SnmpsimPeer, client: SnmpClient) -> None:
    collector = SnmpCollector(client)
    for _ in range(2):
        reading = await collector.collect(target(sim, "big-value"))
        rows = {r["index"]: r for r in reading.tables["interfaces"]}
        assert sorted(rows) == [1, 2, 3, 4] and rows[1]["alias"] == "uplink 1" and rows[3]["name"] == "Gi0/3"
        assert rows[2]["alias"] == "B" * TEXT_CAP  # read whole, kept capped
        assert "warnings" not in reading.facts
    (plan,) = collector._plans.values()
    assert plan.split_walk  # the 19-column GETBULKs went unanswered: each column was walked alone


async def test_a_silent_device_is_still_unreachable_with_a_true_message(client: SnmpClient) -> None:
    nobody = Target("127.0.0.1", free_udp_port(), snmp=SnmpCredentials("2c", "public"), timeout=1.6, retries=0)
    started = time.monotonic()
    # The try it names is the last one (a probe of a third of the timeout), its seconds short: "0.53s", not "0.533333s".
    with pytest.raises(Unreachable, match=r"no SNMP answer from 127\.0\.0\.1:\d+ after 1 try of 0\.\d{1,2}s "):
        await SnmpCollector(client).collect(nobody)
    assert time.monotonic() - started < 1.6 + 0.54 + 1  # the big GET, then the system group alone: two timeouts, no more


async def test_what_stayed_silent_is_asked_again_later(sim: SnmpsimPeer, client: SnmpClient) -> None:
    """Left out of the poll until the static refresh (a lost packet is no quirk), then tried again."""
    collector = SnmpCollector(client, static_max_age=600)
    await collector.collect(target(sim, "one-bad-oid"))
    (plan,) = collector._plans.values()
    assert "hr_system_uptime" in plan.unread and "hr_system_uptime" not in plan.scalars
    plan.retry_at = 0.0  # the refresh is due
    reading = await collector.collect(target(sim, "one-bad-oid"))
    assert "hr_system_uptime" in reading.facts["warnings"][0]  # asked again, still silent, still named
    assert plan.retry_at > time.monotonic()
