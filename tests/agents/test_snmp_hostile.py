"""The SNMP client and collector against agents that misbehave on purpose: bounded time, exact outcomes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from agents.base import SnmpCredentials, Target, Unreachable
from agents.snmp import SnmpClient, SnmpCollector
from agents.snmp_client import MAX_ROWS
from agents.snmp_values import TEXT_CAP
from tests.peers.hostile_agent import HostileAgent, hostile_agent

pytestmark = pytest.mark.timeout(120)

IF_DESCR, IF_MAC = "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.6"
IF_ALIAS = "1.3.6.1.2.1.31.1.1.1.18"
SYS_DESCR, SYS_NAME, SYS_LOCATION = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0"


def target(agent: HostileAgent, timeout: float = 1.0, retries: int = 0) -> Target:
    return Target("127.0.0.1", agent.port, snmp=SnmpCredentials("2c", "public"), timeout=timeout, retries=retries)


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    c = SnmpClient()
    yield c
    await c.close()


async def test_hostile_strings_are_text_without_nuls_and_capped(client: SnmpClient) -> None:
    async with hostile_agent("nasty") as agent:
        got = await client.get(target(agent), [SYS_DESCR, SYS_NAME, SYS_LOCATION])
        walked = await client.walk_columns(target(agent), [IF_DESCR, IF_MAC, IF_ALIAS], binary={IF_MAC})
    descr = got[SYS_DESCR]
    # HTML and escape sequences come back verbatim (the UI escapes); NULs go; bad UTF-8 becomes U+FFFD.
    assert descr == "<script>alert('descr')</script>\x1b[31mRED\x1b[0mNUL\ufffd\ufffd\ufffd( end"
    name = got[SYS_NAME]
    assert isinstance(name, str) and len(name) == TEXT_CAP and name.startswith("<b>\x1b[2JAAA")
    assert got[SYS_LOCATION] == "\ufffd\ufffd<i>basement</i>"
    assert walked[IF_DESCR] == {str(i): descr + str(i) for i in (1, 2, 3)}
    assert walked[IF_ALIAS]["2"] == "<img src=x onerror=alert(1)>\x1b]0;pwned\x07\ufffd\ufffd"
    assert walked[IF_MAC]["3"] == "00:1b:3c:3e:ff:00"  # PhysAddress: hex, whatever the bytes
    assert walked.truncated is None


async def test_hostile_strings_through_the_collector(client: SnmpClient) -> None:
    collector = SnmpCollector(client)
    async with hostile_agent("nasty") as agent:
        reading = await collector.collect(target(agent))
    assert reading.facts["kind"] == "generic" and reading.facts["profiles"] == ["system", "if"]
    assert "\x00" not in reading.facts["sys_contact"] and reading.facts["sys_contact"] == "ops@example"
    assert len(reading.facts["sys_name"]) == TEXT_CAP
    rows = reading.tables["interfaces"]
    assert [r["index"] for r in rows] == [1, 2, 3]
    assert all("\x00" not in r["alias"] and r["mac"] == "00:1b:3c:3e:ff:00" for r in rows)


async def test_endless_table_stops_at_max_rows(client: SnmpClient) -> None:
    async with hostile_agent("endless") as agent:
        started = time.monotonic()
        walked = await client.walk_columns(target(agent), [IF_DESCR, IF_MAC], max_rows=500)
        elapsed = time.monotonic() - started
    assert walked.truncated == "max_rows"
    assert len(walked[IF_DESCR]) == 500 and len(walked[IF_MAC]) == 500
    assert list(walked[IF_DESCR])[:3] == ["1", "2", "3"]
    assert elapsed < 20


async def test_endless_table_default_bound_is_bounded_in_time(client: SnmpClient) -> None:
    async with hostile_agent("endless") as agent:
        started = time.monotonic()
        walked = await client.walk_columns(target(agent), [IF_DESCR])
        elapsed = time.monotonic() - started
        requests = agent.requests
    assert walked.truncated == "max_rows" and len(walked[IF_DESCR]) == MAX_ROWS
    assert requests <= MAX_ROWS // 60 + 2  # one GETBULK carries ~60 rows
    assert elapsed < 60


async def test_endless_table_of_big_values_stops_at_max_bytes(client: SnmpClient) -> None:
    async with hostile_agent("endless", row_bytes=1000) as agent:
        started = time.monotonic()
        walked = await client.walk_columns(target(agent), [IF_DESCR], max_bytes=200_000)
        elapsed = time.monotonic() - started
    assert walked.truncated == "max_bytes"
    assert 200 <= len(walked[IF_DESCR]) <= 201  # stops on the row that crosses the budget
    assert elapsed < 20


async def test_endless_table_through_collector_marks_truncation(client: SnmpClient) -> None:
    collector = SnmpCollector(client, max_rows=300)
    async with hostile_agent("endless") as agent:
        reading = await collector.collect(target(agent))
    assert reading.facts["truncated"] == "max_rows"
    assert len(reading.tables["interfaces"]) == 300


async def test_looping_walk_stops(client: SnmpClient) -> None:
    async with hostile_agent("loop") as agent:
        started = time.monotonic()
        walked = await client.walk_columns(target(agent), [IF_DESCR, IF_ALIAS])
        elapsed = time.monotonic() - started
        requests = agent.requests
    assert walked.truncated == "OID not increasing"
    assert walked[IF_DESCR] == {"1": "x" * 16}
    assert requests == 1 and elapsed < 5


async def test_silent_agent_is_unreachable_within_timeout(client: SnmpClient) -> None:
    async with hostile_agent("silent") as agent:
        started = time.monotonic()
        with pytest.raises(Unreachable, match=r"after 3 tries of 0\.4s"):
            await client.get(target(agent, timeout=0.4, retries=2), [SYS_DESCR])
        elapsed = time.monotonic() - started
        requests = agent.requests
    assert requests == 3
    assert 0.4 * 3 - 0.1 <= elapsed < 0.4 * 3 + 1.5


async def test_garbage_replies_are_dropped_and_end_as_unreachable(client: SnmpClient) -> None:
    async with hostile_agent("garbage") as agent:
        started = time.monotonic()
        with pytest.raises(Unreachable):
            await client.walk_columns(target(agent, timeout=0.4, retries=1), [IF_DESCR])
        elapsed = time.monotonic() - started
    assert elapsed < 0.4 * 2 + 1.5


async def test_too_big_gets_are_split_until_they_fit(client: SnmpClient) -> None:
    oids = [f"1.3.6.1.2.1.1.{i}.0" for i in range(1, 7)]
    async with hostile_agent("small") as agent:
        got = await client.get(target(agent), oids)
        requests = agent.requests
    assert got["1.3.6.1.2.1.1.3.0"] == 12345 and got["1.3.6.1.2.1.1.4.0"] == "ops@example"
    assert all(value is not None for value in got.values())
    assert requests == 3  # 6 -> tooBig, then 3 + 3
