"""The SNMP client and collector against a real net-snmp snmpd (and snmpsim for Counter64)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.base import REGISTRY, CollectError, SnmpCredentials, Target, Unreachable
from agents.snmp import SnmpClient, SnmpCollector, snmp_set
from agents.snmp_transport import RCVBUF_BYTES, udp_socket
from tests.peers.snmpd import SnmpdPeer, free_udp_port, start_snmpd
from tests.peers.snmpsim import SnmpsimPeer

pytestmark = pytest.mark.timeout(120)

SYS_DESCR, SYS_OID, SYS_UPTIME = "1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0"
SYS_CONTACT, SYS_NAME, SYS_LOCATION = "1.3.6.1.2.1.1.4.0", "1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.6.0"
IF_DESCR, IF_TYPE, IF_MAC, IF_OPER = (f"1.3.6.1.2.1.2.2.1.{c}" for c in (2, 3, 6, 8))
IF_HC_IN = "1.3.6.1.2.1.31.1.1.1.6"


def v2c(peer: SnmpdPeer | SnmpsimPeer, community: str = "public", timeout: float = 2.0, retries: int = 1) -> Target:
    return Target(peer.address, peer.port, snmp=SnmpCredentials("2c", community), timeout=timeout, retries=retries)


def cli_walk(peer: SnmpdPeer, oid: str) -> dict[str, str]:
    """The same column walked by net-snmp's own snmpbulkwalk: the oracle for our walk."""
    env = {**os.environ, "MIBS": "", "MIBDIRS": "/nonexistent"}
    out = subprocess.run(
        ["snmpbulkwalk", "-v2c", "-c", peer.community, "-Oqn", f"{peer.address}:{peer.port}", oid],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        name, _, value = line.partition(" ")
        rows[name.lstrip(".")[len(oid) + 1 :]] = value.strip('"')
    return rows


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    c = SnmpClient()
    yield c
    await c.close()


async def test_get_scalars_v2c(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    got = await client.get(v2c(snmpd), [SYS_NAME, SYS_LOCATION, SYS_CONTACT, SYS_OID, SYS_UPTIME, SYS_DESCR])
    assert got[SYS_NAME] == "pocketnoc-test"
    assert got[SYS_LOCATION] == "rack 1, lab"
    assert got[SYS_CONTACT] == "noc@example.test"
    assert got[SYS_OID] == "1.3.6.1.4.1.8072.3.2.10"
    assert isinstance(got[SYS_UPTIME], int) and got[SYS_UPTIME] >= 0
    assert isinstance(got[SYS_DESCR], str) and got[SYS_DESCR].startswith("Linux")


async def test_missing_objects_are_none_never_values(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    missing_scalar = "1.3.6.1.2.1.1.99.0"  # noSuchObject
    missing_instance = "1.3.6.1.2.1.1.5.7"  # noSuchInstance
    got = await client.get(v2c(snmpd), [SYS_NAME, missing_scalar, missing_instance])
    assert got == {SYS_NAME: "pocketnoc-test", missing_scalar: None, missing_instance: None}
    walked = await client.walk_columns(v2c(snmpd), ["1.3.6.1.2.1.33.1.2.1", IF_DESCR])
    assert walked["1.3.6.1.2.1.33.1.2.1"] == {}  # no UPS-MIB: an empty column, not an error
    assert walked[IF_DESCR] and walked.truncated is None


async def test_multi_column_walk_matches_net_snmp(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    walked = await client.walk_columns(v2c(snmpd), [IF_DESCR, IF_TYPE, IF_MAC, IF_OPER, IF_HC_IN], binary={IF_MAC})
    assert walked.truncated is None
    assert walked[IF_DESCR] == cli_walk(snmpd, IF_DESCR)
    assert {k: str(v) for k, v in walked[IF_TYPE].items()} == cli_walk(snmpd, IF_TYPE)
    assert set(walked[IF_HC_IN]) == set(walked[IF_DESCR])
    assert all(isinstance(v, int) for v in walked[IF_HC_IN].values())
    for mac in walked[IF_MAC].values():  # PhysAddress as hex, never raw bytes
        assert isinstance(mac, str) and all(len(part) == 2 for part in mac.split(":"))


async def test_tiny_bulk_budget_still_walks_everything(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    target = Target(snmpd.address, snmpd.port, snmp=SnmpCredentials("2c", "public"), options={"snmp_varbinds": 1})
    walked = await client.walk_columns(target, [IF_DESCR, IF_TYPE])
    assert walked[IF_DESCR] == cli_walk(snmpd, IF_DESCR)
    assert set(walked[IF_TYPE]) == set(walked[IF_DESCR])
    got = await client.get(target, [SYS_NAME, SYS_LOCATION, SYS_CONTACT])  # one OID per request
    assert got == {SYS_NAME: "pocketnoc-test", SYS_LOCATION: "rack 1, lab", SYS_CONTACT: "noc@example.test"}


@pytest.mark.parametrize("expected_rows", [1, 3, 1000])
async def test_expected_rows_hint_never_changes_the_result(snmpd: SnmpdPeer, client: SnmpClient, expected_rows: int) -> None:
    walked = await client.walk_columns(v2c(snmpd), [IF_DESCR, IF_TYPE], expected_rows=expected_rows)
    assert walked[IF_DESCR] == cli_walk(snmpd, IF_DESCR)
    assert set(walked[IF_TYPE]) == set(walked[IF_DESCR]) and walked.truncated is None


async def test_snmp_v1_get_and_walk(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    target = Target(snmpd.address, snmpd.port, snmp=SnmpCredentials("1", "public"))
    got = await client.get(target, [SYS_NAME, "1.3.6.1.2.1.1.99.0", SYS_LOCATION])  # v1 noSuchName is retried
    assert got == {SYS_NAME: "pocketnoc-test", "1.3.6.1.2.1.1.99.0": None, SYS_LOCATION: "rack 1, lab"}
    walked = await client.walk_columns(target, [IF_DESCR, IF_OPER, IF_HC_IN])
    assert walked[IF_DESCR] == cli_walk(snmpd, IF_DESCR)
    assert walked[IF_HC_IN] == {}  # Counter64 cannot travel in SNMPv1


@pytest.mark.parametrize(
    ("user", "auth", "auth_key", "priv", "priv_key"),
    [
        ("mon", "sha", "authpass123", "aes128", "privpass123"),
        ("mon256", "sha256", "authpass256", "aes256", "privpass256"),
        ("monauth", "sha512", "authpass512", None, None),
        ("mondes", "md5", "authpassmd5", "des", "privpassdes"),
        ("monc", "sha224", "authpass224", "aes256c", "privpass256c"),
        ("monnone", None, None, None, None),
    ],
)
async def test_snmp_v3(
    snmpd: SnmpdPeer,
    client: SnmpClient,
    user: str,
    auth: str | None,
    auth_key: str | None,
    priv: str | None,
    priv_key: str | None,
) -> None:
    creds = SnmpCredentials("3", user=user, auth_protocol=auth, auth_key=auth_key, priv_protocol=priv, priv_key=priv_key)
    target = Target(snmpd.address, snmpd.port, snmp=creds)
    got = await client.get(target, [SYS_NAME, SYS_OID])
    assert got == {SYS_NAME: "pocketnoc-test", SYS_OID: "1.3.6.1.4.1.8072.3.2.10"}
    walked = await client.walk_columns(target, [IF_DESCR, IF_HC_IN])
    assert walked[IF_DESCR] == cli_walk(snmpd, IF_DESCR)


async def test_wrong_community_is_unreachable_within_bound(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    target = v2c(snmpd, community="not-the-community", timeout=0.5, retries=1)
    started = time.monotonic()
    with pytest.raises(Unreachable, match=r"no SNMP answer .* after 2 tries"):
        await client.get(target, [SYS_NAME])
    assert time.monotonic() - started < 0.5 * 2 + 1.5


async def test_closed_port_is_unreachable(client: SnmpClient) -> None:
    target = Target("127.0.0.1", free_udp_port(), snmp=SnmpCredentials("2c", "public"), timeout=0.3, retries=0)
    started = time.monotonic()
    with pytest.raises(Unreachable):
        await client.walk_columns(target, [IF_DESCR])
    assert time.monotonic() - started < 0.3 + 1.5


async def test_v3_wrong_auth_key_says_so(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    creds = SnmpCredentials(
        "3",
        user="mon",
        auth_protocol="sha",
        auth_key="wrong-key-1",
        priv_protocol="aes",
        priv_key="privpass123",
    )
    with pytest.raises(CollectError, match="authentication failed: wrong auth key") as err:
        await client.get(Target(snmpd.address, snmpd.port, snmp=creds, timeout=1, retries=0), [SYS_NAME])
    assert not isinstance(err.value, Unreachable)


async def test_v3_unknown_user_says_so(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    creds = SnmpCredentials("3", user="intruder", auth_protocol="sha", auth_key="authpass123")
    with pytest.raises(CollectError, match="unknown SNMPv3 user name"):
        await client.get(Target(snmpd.address, snmpd.port, snmp=creds, timeout=1, retries=0), [SYS_NAME])


async def test_v3_wrong_priv_key_is_unreachable_with_a_hint(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    creds = SnmpCredentials(
        "3",
        user="mon",
        auth_protocol="sha",
        auth_key="authpass123",
        priv_protocol="aes",
        priv_key="wrong-priv-1",
    )
    started = time.monotonic()
    with pytest.raises(Unreachable, match="wrong SNMPv3 privacy key"):  # snmpd drops what it cannot decrypt
        await client.get(Target(snmpd.address, snmpd.port, snmp=creds, timeout=0.5, retries=0), [SYS_NAME])
    assert time.monotonic() - started < 0.5 + 2.5


async def test_unknown_v3_protocol_is_a_clear_error(snmpd: SnmpdPeer, client: SnmpClient) -> None:
    creds = SnmpCredentials("3", user="mon", auth_protocol="sha3", auth_key="authpass123")
    with pytest.raises(CollectError, match="unknown SNMPv3 auth protocol 'sha3'"):
        await client.get(Target(snmpd.address, snmpd.port, snmp=creds), [SYS_NAME])


async def test_set_writes_and_refusals_name_the_reason(tmp_path: Path) -> None:
    peer = start_snmpd(tmp_path, sys_contact=None)  # an unconfigured sysContact is writable
    try:
        rw = Target(peer.address, peer.port, snmp=SnmpCredentials("2c", peer.rw_community))
        assert await snmp_set(rw, [(SYS_CONTACT, "oncall <noc@example.test>")]) == {SYS_CONTACT: "oncall <noc@example.test>"}
        client = SnmpClient()
        try:
            assert (await client.get(rw, [SYS_CONTACT]))[SYS_CONTACT] == "oncall <noc@example.test>"
            with pytest.raises(CollectError, match=r"SET 1\.3\.6\.1\.2\.1\.1\.6\.0 refused: notWritable"):
                await client.set(rw, [(SYS_LOCATION, "elsewhere")])  # configured in snmpd.conf: read-only
            with pytest.raises(CollectError, match="refused: noAccess"):
                await client.set(v2c(peer), [(SYS_CONTACT, "x")])  # read-only community
            with pytest.raises(TypeError):
                await client.set(rw, [(SYS_CONTACT, 1.5)])
        finally:
            await client.close()
    finally:
        peer.stop()


async def test_collector_reading_contract_on_snmpd(snmpd: SnmpdPeer) -> None:
    assert REGISTRY["snmp"] is SnmpCollector
    collector = SnmpCollector()
    try:
        first = await collector.collect(v2c(snmpd))
        second = await collector.collect(v2c(snmpd))
    finally:
        await collector.close()
    facts = second.facts
    assert facts["kind"] == "linux"
    assert facts["profiles"] == ["system", "if", "host", "ucd"]
    assert facts["sys_name"] == "pocketnoc-test" and facts["sys_location"] == "rack 1, lab"
    assert facts["sys_contact"] == "noc@example.test" and facts["sys_object_id"] == "1.3.6.1.4.1.8072.3.2.10"
    assert facts["uptime_seconds"] >= first.facts["uptime_seconds"]
    names = cli_walk(snmpd, IF_DESCR)
    rows = second.tables["interfaces"]
    assert {str(r["index"]) for r in rows} == set(names)
    for row in rows:
        assert set(row) == {
            "index",
            "name",
            "descr",
            "alias",
            "type",
            "mtu",
            "speed_bps",
            "mac",
            "admin",
            "oper",
            "last_change_s",
        }
        assert row["descr"] == names[str(row["index"])]
        assert row["admin"] in {"up", "down", "testing", "unknown"}
        assert row["oper"] in {"up", "down", "testing", "unknown", "dormant", "notPresent", "lowerLayerDown"}
    by_metric = {s.metric: s for s in second.samples}
    assert by_metric["if_in_octets"].kind == "counter64"
    assert by_metric["if_in_errors"].kind == "counter32"
    # cpu_load_pct is absent for snmpd's first minute (hrProcessorLoad needs a minute of history).
    assert by_metric.get("cpu_load_pct", by_metric["uptime_seconds"]).value >= 0
    for metric in (
        "uptime_seconds",
        "mem_total_bytes",
        "mem_used_bytes",
        "mem_used_pct",
        "load1",
        "load5",
        "load15",
        "if_oper_up",
    ):
        assert metric in by_metric, metric
    assert 0 <= by_metric["mem_used_pct"].value <= 100
    assert any(r["type"] == "ram" for r in second.tables["storage"])
    fixed = {str(r["descr"]) for r in second.tables["storage"] if r["type"] == "fixed" and r["size_bytes"]}
    assert {s.labels["storage"] for s in second.samples if s.metric == "storage_used_pct"} == fixed
    assert "truncated" not in facts and second.duration > 0


async def test_collector_recovers_after_agent_restart(tmp_path: Path) -> None:
    peer = start_snmpd(tmp_path)
    collector = SnmpCollector()
    target = v2c(peer, timeout=0.5, retries=0)
    try:
        assert (await collector.collect(target)).facts["kind"] == "linux"
        peer.stop()
        with pytest.raises(Unreachable):
            await collector.collect(target)
        peer.start()
        again = await collector.collect(target)
        assert again.facts["sys_name"] == "pocketnoc-test" and again.tables["interfaces"]
    finally:
        await collector.close()
        peer.stop()


async def test_static_columns_are_cached_until_stale(tmp_path: Path) -> None:
    peer = start_snmpd(tmp_path)
    cached, fresh = SnmpCollector(), SnmpCollector(static_max_age=0)
    try:
        first = await cached.collect(v2c(peer))
        await fresh.collect(v2c(peer))
        index = first.tables["interfaces"][0]["index"]
        rw = Target(peer.address, peer.port, snmp=SnmpCredentials("2c", peer.rw_community))
        await snmp_set(rw, [(f"1.3.6.1.2.1.31.1.1.1.18.{index}", "renamed by test")])
        stale = (await cached.collect(v2c(peer))).tables["interfaces"][0]
        current = (await fresh.collect(v2c(peer))).tables["interfaces"][0]
        assert stale["alias"] == first.tables["interfaces"][0]["alias"]  # ifAlias is cached for 10 minutes
        assert current["alias"] == "renamed by test"
        assert stale["oper"] == current["oper"]  # dynamic columns are always walked
    finally:
        await cached.close()
        await fresh.close()
        peer.stop()


async def test_counter64_above_2_pow_32(snmpsim_devices: SnmpsimPeer, client: SnmpClient) -> None:
    walked = await client.walk_columns(v2c(snmpsim_devices, "switch48"), [IF_HC_IN, "1.3.6.1.2.1.2.2.1.10"])
    assert walked[IF_HC_IN]["1"] == 5_000_000_001 and walked[IF_HC_IN]["48"] == 5_000_000_048
    assert walked["1.3.6.1.2.1.2.2.1.10"]["1"] == 5_000_000_001 % 2**32
    assert len(walked[IF_HC_IN]) == 48


async def test_profile_override_skips_detection(snmpd: SnmpdPeer) -> None:
    collector = SnmpCollector()
    try:
        reading = await collector.collect(v2c(snmpd), profile="if")
        assert reading.facts["profiles"] == ["system", "if"] and reading.facts["kind"] == "linux"
        assert "storage" not in reading.tables
        with pytest.raises(CollectError, match="unknown SNMP profile"):
            await collector.collect(v2c(snmpd), profile="toaster")
    finally:
        await collector.close()


async def test_no_credentials_is_a_collect_error(client: SnmpClient) -> None:
    with pytest.raises(CollectError, match="no SNMP credentials"):
        await client.get(Target("127.0.0.1", 161), [SYS_NAME])


def test_shared_socket_gets_a_large_receive_buffer() -> None:
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    with udp_socket(socket.AF_INET) as sock:  # root may force past rmem_max; others get up to it
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) >= min(RCVBUF_BYTES, rmem_max)
        assert not sock.getblocking()


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_target(tmp_path: Path) -> None:
    peer = start_snmpd(tmp_path, ipv6=True)
    collector = SnmpCollector()
    try:
        reading = await collector.collect(Target("::1", peer.port, snmp=SnmpCredentials("2c", peer.community)))
        assert reading.facts["sys_name"] == "pocketnoc-test" and reading.tables["interfaces"]
        creds = SnmpCredentials(
            "3", user="mon", auth_protocol="sha", auth_key="authpass123", priv_protocol="aes", priv_key="privpass123"
        )
        got = await collector.client.get(Target("::1", peer.port, snmp=creds), [SYS_NAME])
        assert got == {SYS_NAME: "pocketnoc-test"}
    finally:
        await collector.close()
        peer.stop()
