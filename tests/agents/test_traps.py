"""The trap receiver against real net-snmp senders (snmptrap, snmpinform) on loopback: v1, v2c, v3 and informs."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from pyasn1.codec.ber import decoder
from pysnmp.proto import api

from agents import traps_v3
from agents.base import REGISTRY, SnmpCredentials
from agents.traps import TokenBuckets, TrapReceiver
from agents.traps_model import SNMP_TRAP_ADDRESS, SNMP_TRAP_ENTERPRISE, small_int
from tests.agents.conftest import COLD, ENTERPRISE, IF_INDEX, LINK_DOWN, LINK_UP, WARM, Start, send, settle, until
from tests.peers import traps as tp
from tests.peers.snmpd import free_udp_port

pytestmark = pytest.mark.timeout(180)


async def test_v1_link_down_maps_to_v2_oid_with_if_index(start: Start) -> None:
    receiver, got = await start()
    await send(tp.v1_trap_args(receiver.port, f"{ENTERPRISE}.1", 2, 0, [(f"{IF_INDEX}.7", "i", "7")], agent="192.0.2.9"))
    await until(lambda: len(got) == 1)
    trap = got[0]
    assert (trap.version, trap.community_or_user, trap.source) == ("1", "public", "127.0.0.1")
    assert (trap.trap_oid, trap.name, trap.if_index, trap.uptime) == (LINK_DOWN, "linkDown", 7, 4242)
    # RFC 3584: the agent address and enterprise follow the var-binds (the community does not: it is a secret).
    assert trap.varbinds == ((f"{IF_INDEX}.7", "7"), (SNMP_TRAP_ADDRESS, "192.0.2.9"), (SNMP_TRAP_ENTERPRISE, f"{ENTERPRISE}.1"))
    assert trap.varbind_text().splitlines()[0] == f"{IF_INDEX}.7 = 7"
    assert not trap.truncated and not trap.inform and trap.ts == pytest.approx(time.time(), abs=30)
    assert receiver.counters() == {**receiver.counters(), "received": 1, "accepted": 1}


async def test_v1_enterprise_specific_trap(start: Start) -> None:
    receiver, got = await start()
    await send(tp.v1_trap_args(receiver.port, f"{ENTERPRISE}.5", 6, 17, [(f"{ENTERPRISE}.5.1", "s", "fan failed")]))
    await until(lambda: len(got) == 1)
    assert got[0].trap_oid == got[0].name == f"{ENTERPRISE}.5.0.17"
    assert got[0].value(f"{ENTERPRISE}.5.1") == "fan failed" and got[0].if_index is None


async def test_v2c_link_up_and_cold_start(start: Start) -> None:
    receiver, got = await start()
    await send(tp.v2c_args(receiver.port, LINK_UP, [(f"{IF_INDEX}.3", "i", "3"), ("1.3.6.1.2.1.2.2.1.2.3", "s", "eth2")]))
    await send(tp.v2c_args(receiver.port, COLD, uptime="0"))
    await until(lambda: len(got) == 2)
    up, cold = got
    assert (up.version, up.name, up.if_index, up.uptime) == ("2c", "linkUp", 3, 4242)
    assert up.varbinds == ((f"{IF_INDEX}.3", "3"), ("1.3.6.1.2.1.2.2.1.2.3", "eth2"))  # sysUpTime, snmpTrapOID taken out
    assert (cold.name, cold.uptime, cold.varbinds) == ("coldStart", 0, ())


async def test_v2c_inform_is_acked_and_delivered_once(start: Start) -> None:
    receiver, got = await start()
    took = await send(tp.v2c_args(receiver.port, WARM, [(f"{ENTERPRISE}.1", "s", "hi")], inform=True))
    assert took < 1.5  # snmpinform waits 2 s for the ACK and gives up without it
    await asyncio.sleep(0.3)
    assert [(t.name, t.inform) for t in got] == [("warmStart", True)]


async def test_retransmitted_inform_is_acked_again_but_delivered_once(start: Start) -> None:
    receiver, got = await start()
    inform = tp.capture(lambda port: tp.v2c_args(port, WARM, [(f"{ENTERPRISE}.1", "s", "x")], inform=True))
    request = decoder.decode(inform, asn1Spec=api.v2c.Message())[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.connect(("127.0.0.1", receiver.port))
        loop = asyncio.get_running_loop()
        for _ in range(2):
            sock.send(inform)
            answer = await asyncio.wait_for(loop.sock_recv(sock, 65535), 10)
            response = api.v2c.apiMessage.get_pdu(decoder.decode(answer, asn1Spec=api.v2c.Message())[0])
            assert response.tagSet == api.v2c.GetResponsePDU.tagSet
            assert api.v2c.apiPDU.get_request_id(response) == api.v2c.apiPDU.get_request_id(api.v2c.apiMessage.get_pdu(request))
            assert int(api.v2c.apiPDU.get_error_status(response)) == 0
            assert len(api.v2c.apiPDU.get_varbinds(response)) == 3
    assert len(got) == 1 and receiver.counts.duplicates == 1


@pytest.mark.parametrize(
    ("sender", "user"),
    [
        (tp.V3Sender(), "mon"),
        (tp.V3Sender("mon256", "SHA-256", "authpass256", "AES-256", "privpass256"), "mon256"),
        (tp.V3Sender("monauth", "SHA-512", "authpass512", None, None), "monauth"),
    ],
)
async def test_v3_traps_from_unconfigured_engine_ids(start: Start, sender: tp.V3Sender, user: str) -> None:
    receiver, got = await start()
    await send(tp.v3_args(receiver.port, LINK_DOWN, [(f"{IF_INDEX}.2", "i", "2")], sender=sender))
    await send(tp.v3_args(receiver.port, LINK_UP, [(f"{IF_INDEX}.2", "i", "2")], sender=sender))  # another engine
    await until(lambda: len(got) == 2)
    assert [(t.version, t.community_or_user, t.name, t.if_index) for t in got] == [
        ("3", user, "linkDown", 2),
        ("3", user, "linkUp", 2),
    ]


async def test_v3_engine_ids_are_learned_only_when_authentic_and_bounded(start: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traps_v3, "MAX_LEARNED", 2)
    receiver, got = await start()
    for _ in range(3):
        await send(tp.v3_args(receiver.port, COLD, sender=tp.V3Sender(priv_key="forgedkey1")))
    await settle(receiver, 0.2)
    assert receiver.counters()["v3_engines_learned"] == 0 and receiver.counts.dropped_auth == 3
    first = tp.random_engine_id()
    for engine_id in (first, tp.random_engine_id(), tp.random_engine_id(), first):  # the first is forgotten, relearned
        await send(tp.v3_args(receiver.port, COLD, engine_id=engine_id))
    await until(lambda: len(got) == 4)
    assert receiver.counters()["v3_engines_learned"] == 2


async def test_v3_inform_discovers_our_engine_id(start: Start) -> None:
    engine_id = bytes.fromhex("800000000401020304050607")
    receiver, got = await start(engine_id=engine_id)
    assert receiver.engine_id == engine_id.hex()
    took = await send(tp.v3_args(receiver.port, COLD, [(f"{ENTERPRISE}.1", "s", "v3 inform")], inform=True))
    assert took < 1.5
    await asyncio.sleep(0.3)
    assert [(t.version, t.community_or_user, t.inform, t.value(f"{ENTERPRISE}.1")) for t in got] == [
        ("3", "mon", True, "v3 inform")
    ]


async def test_wrong_credentials_are_dropped_and_counted(start: Start) -> None:
    receiver, got = await start()
    await send(tp.v2c_args(receiver.port, COLD, community="private"))
    await send(tp.v1_trap_args(receiver.port, ENTERPRISE, 0, 0, community="Public"))
    bad = [
        tp.V3Sender(priv_key="wrongpriv1"),
        tp.V3Sender(auth_key="wrongauth1"),
        tp.V3Sender(user="nobody"),
        tp.V3Sender(level="noAuthNoPriv"),  # the right user name without its keys: a downgrade
        tp.V3Sender(level="authNoPriv"),
    ]
    for sender in bad:
        await send(tp.v3_args(receiver.port, COLD, sender=sender))
    inform = await asyncio.to_thread(tp.run, tp.v3_args(receiver.port, COLD, sender=bad[0], inform=True))
    assert inform.returncode != 0  # no ACK for a wrong key
    await settle(receiver)
    assert got == [] and receiver.counts.accepted == 0
    assert receiver.counts.dropped_auth >= 2 + len(bad) + 1
    assert receiver.counts.dropped_malformed == 0


async def test_ipv6_loopback(start: Start) -> None:
    try:
        receiver, got = await start(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    await send(tp.v2c_args(receiver.port, LINK_UP, [(f"{IF_INDEX}.9", "i", "9")], host="::1"))
    await send(tp.v3_args(receiver.port, LINK_DOWN, host="::1"))
    await until(lambda: len(got) == 2)
    assert [(t.source, t.name) for t in got] == [("::1", "linkUp"), ("::1", "linkDown")]


async def test_stop_releases_the_port_and_nothing_is_registered(start: Start) -> None:
    port = free_udp_port()
    receiver = TrapReceiver("127.0.0.1", port, ["public"], [], lambda trap: None)
    await receiver.start()
    assert receiver.port == port and receiver.engine_id is None
    with pytest.raises(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
    await receiver.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as free:
        free.bind(("127.0.0.1", port))
    assert not any("trap" in kind for kind in REGISTRY)


def test_token_buckets_refill_and_forget_idle_sources() -> None:
    buckets = TokenBuckets(rate=10, burst=5, max_keys=3)
    assert [buckets.take("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert buckets.take("a", 0.1) and not buckets.take("a", 0.1)  # 0.1 s at 10/s is one token
    assert buckets.take("b", 0.1, cost=5) and not buckets.take("b", 0.1)
    buckets.take("c", 0.1)
    buckets.take("d", 10.0)  # the table is full: a, b, c are idle and full again, so they go
    assert len(buckets) == 1
    assert TokenBuckets(rate=0, burst=1).take("x", 0.0, cost=100)


def test_bad_v3_users_are_refused() -> None:
    with pytest.raises(ValueError, match="privacy needs an auth key"):
        traps_v3.prepare_users([SnmpCredentials("3", user="u", priv_key="p")])
    with pytest.raises(ValueError, match="unknown auth protocol"):
        traps_v3.prepare_users([SnmpCredentials("3", user="u", auth_protocol="sha3", auth_key="k")])


def test_numbers_from_devices_are_parsed_defensively() -> None:
    assert [small_int(t) for t in ("42", "", "²", "٣", "-1", "9" * 21, "1e3")] == [42, None, None, None, None, None, None]
