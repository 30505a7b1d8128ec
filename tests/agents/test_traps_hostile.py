"""The trap receiver under hostile and heavy traffic on loopback: odd values, garbage datagrams, floods, load."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import statistics
import time
import tracemalloc
from typing import Any

import pytest

from agents.traps import Trap
from tests.agents.conftest import COLD, ENTERPRISE, IF_INDEX, LINK_DOWN, Start, send, settle, until
from tests.peers import traps as tp

pytestmark = pytest.mark.timeout(180)


async def test_hostile_strings_kept_as_text_and_capped(start: Start) -> None:
    receiver, got = await start(max_value_bytes=4096)
    escapes = b"\x1b[31mRED\x1b[0m\x1b]0;pwned\x07 \xff\xfe caf\xc3\xa9 end\x00"
    long_value = b"a" + "é".encode() * 3000  # 6001 bytes: the cap must not split a character
    varbinds = [
        (f"{ENTERPRISE}.2.1", "s", "<script>alert('x')</script><b>bold</b>"),
        (f"{ENTERPRISE}.2.2", "x", escapes.hex()),
        (f"{ENTERPRISE}.2.3", "x", (b"A" * 100 + b"\x00" + b"B" * 100).hex()),
        (f"{ENTERPRISE}.2.4", "x", long_value.hex()),
        (f"{ENTERPRISE}.2.5", "x", "001a2b3c4d5e"),  # a MAC address: binary, shown as hex
        (f"{ENTERPRISE}.2.6", "a", "10.1.2.3"),
        (f"{ENTERPRISE}.2.7", "o", "1.3.6.1.4.1.99999.42"),
    ]
    await send(tp.v2c_args(receiver.port, f"{ENTERPRISE}.0.1", varbinds))
    await until(lambda: len(got) == 1)
    values = dict(got[0].varbinds)
    assert values[f"{ENTERPRISE}.2.1"] == "<script>alert('x')</script><b>bold</b>"
    assert values[f"{ENTERPRISE}.2.2"] == "\x1b[31mRED\x1b[0m\x1b]0;pwned\x07 \ufffd\ufffd café end"
    assert values[f"{ENTERPRISE}.2.3"] == "A" * 100 + "B" * 100
    assert values[f"{ENTERPRISE}.2.4"] == "a" + "é" * 2047  # 4095 bytes: the half character at 4096 is cut
    assert values[f"{ENTERPRISE}.2.5"] == "00:1a:2b:3c:4d:5e"
    assert (values[f"{ENTERPRISE}.2.6"], values[f"{ENTERPRISE}.2.7"]) == ("10.1.2.3", "1.3.6.1.4.1.99999.42")
    assert not got[0].truncated


async def test_too_many_varbinds_are_capped(start: Start) -> None:
    receiver, got = await start(max_varbinds=128)
    varbinds = [(f"{ENTERPRISE}.3.{i}", "i", str(i)) for i in range(1, 501)]
    await send(tp.v2c_args(receiver.port, f"{ENTERPRISE}.0.3", varbinds))
    await send(tp.v3_args(receiver.port, f"{ENTERPRISE}.0.3", varbinds))
    await until(lambda: len(got) == 2)
    for trap in got:
        assert trap.truncated and len(trap.varbinds) == 128
        assert trap.varbinds[0] == (f"{ENTERPRISE}.3.1", "1") and trap.varbinds[-1] == (f"{ENTERPRISE}.3.128", "128")


def tlv(tag: int, content: bytes) -> bytes:
    size = len(content)
    head = bytes([size]) if size < 0x80 else bytes([0x82]) + size.to_bytes(2, "big")
    return bytes([tag]) + head + content


def v2c_trap(varbinds: list[tuple[bytes, bytes]]) -> bytes:
    """A v2c SNMPv2-Trap message built by hand from (OID content, whole value TLV) pairs."""
    vbs = b"".join(tlv(0x30, tlv(0x06, oid) + value) for oid, value in varbinds)
    pdu = tlv(0xA7, b"\x02\x01\x01\x02\x01\x00\x02\x01\x00" + tlv(0x30, vbs))
    return tlv(0x30, b"\x02\x01\x01" + tlv(0x04, b"public") + pdu)


def garbage(valid: bytes, v3: bytes) -> list[bytes]:
    """Random bytes, every truncation of real messages, absurd lengths and structures, non-notifications."""
    rng = random.Random(1234)
    items = [rng.randbytes(rng.randint(0, 1500)) for _ in range(150)]
    items += [valid[:n] for n in range(len(valid))] + [v3[:n] for n in range(0, len(v3), 7)]
    items += [
        valid + b"\x00",  # trailing garbage
        b"\x30\x84\xff\xff\xff\xff" + valid[2:],  # length far beyond the datagram
        b"\x30\x80" + valid[2:] + b"\x00\x00",  # indefinite length
        b"\x30\x82\xff\xf0" + b"\x30\x82\xff\xf0" * 2000,  # nesting
        valid.replace(b"\x06\x0a\x2b\x06\x01\x06\x03\x01\x01\x04\x01\x00", b"\x06\x0a\x2b\x06\x01\x06\x03\x01\x01\x04\x01\x01"),
        bytes.fromhex("302602010104067075626c6963a019020101020100020100300e300c06082b060102010101000500"),  # a GET
        bytes.fromhex("301002010204067075626c6963a7030201"),  # version 2 does not exist
        v2c_trap([(b"\x2b" + b"\xff" * 1000 + b"\x01", b"\x05\x00")]),  # a 1000-byte OID arc
        v2c_trap([(b"\x2b\x06", b"\x04\x01")]),  # a value running past its var-bind
        v2c_trap([(b"\x2b\x06", b"\x05\x00")] * 3),  # no snmpTrapOID.0
    ]
    return items


async def test_garbage_is_counted_and_the_receiver_keeps_working(start: Start) -> None:
    receiver, got = await start(rate_per_source=0, global_rate=0)
    valid = tp.capture(lambda port: tp.v2c_args(port, COLD, [(f"{ENTERPRISE}.1", "s", "ok")]))
    v3 = tp.capture(lambda port: tp.v3_args(port, COLD, sender=tp.V3Sender(user="nobody")))
    items = garbage(valid, v3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for i, item in enumerate(items):
            sock.sendto(item, ("127.0.0.1", receiver.port))
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # let the receiver drain: this test is about parsing, not floods
    await until(lambda: receiver.counts.received >= len(items) - 1)  # the empty datagram may not count
    await settle(receiver)
    assert got == [] and receiver.counts.accepted == 0
    assert receiver.counts.dropped_malformed + receiver.counts.dropped_auth == receiver.counts.received
    assert receiver.counts.dropped_malformed > len(items) - 10
    await send(tp.v2c_args(receiver.port, COLD))
    await until(lambda: len(got) == 1)


async def test_flood_from_one_source_is_rate_limited(start: Start) -> None:
    receiver, got = await start(rate_per_source=100, burst_per_source=200)
    flood = tp.capture(lambda port: tp.v2c_args(port, LINK_DOWN, [(f"{IF_INDEX}.1", "i", "1")]))
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        started = time.monotonic()
        proc = tp.blaster(receiver.port, 0, 3000, flood)
        _out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 0, err
        await settle(receiver)
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    counts = receiver.counts
    assert counts.dropped_rate > 0 and counts.dropped_rate == counts.received - counts.accepted
    assert 200 <= counts.accepted <= 200 + 100 * elapsed + 5
    assert peak < 8 * 1024 * 1024, f"peak {peak} bytes during the flood"
    # Another source still gets through at once.
    took = await send([tp.SNMPTRAP, "--clientaddr=127.0.0.2", *tp.v2c_args(receiver.port, COLD)[1:]])
    await until(lambda: got[-1].name == "coldStart", timeout=2 + took)
    assert got[-1].source == "127.0.0.2"


async def test_callback_errors_are_caught_and_logged_once(start: Start, caplog: pytest.LogCaptureFixture) -> None:
    calls: list[Trap] = []

    def broken(trap: Trap) -> None:
        calls.append(trap)
        raise RuntimeError("store is down")

    receiver, _got = await start(on_trap=broken)
    with caplog.at_level(logging.ERROR, logger="agents.traps"):
        for _ in range(3):
            await send(tp.v2c_args(receiver.port, COLD))
        await until(lambda: len(calls) == 3)
    assert receiver.counts.callback_errors == 3 and receiver.counts.accepted == 3
    assert len([r for r in caplog.records if r.name == "agents.traps"]) == 1


@pytest.mark.quiet  # a speed budget: measured alone, after the rest of the suite (see the Makefile's test target)
async def test_receive_to_callback_latency_at_1000_per_second(start: Start, record_property: Any) -> None:
    latencies: list[float] = []
    mark_oid = f"{ENTERPRISE}.9.1"

    def on_trap(trap: Trap) -> None:
        latencies.append(time.monotonic() - float(trap.value(mark_oid) or "nan"))

    receiver, _got = await start(on_trap=on_trap, rate_per_source=5000, burst_per_source=5000)
    datagram = tp.capture(lambda port: tp.v2c_args(port, LINK_DOWN, [(mark_oid, "s", tp.MARK.decode())]))
    count, rate = 5000, 1000.0
    proc = tp.blaster(receiver.port, rate, count, datagram, datagram.index(tp.MARK))
    out, err = await asyncio.to_thread(proc.communicate, timeout=120)
    assert proc.returncode == 0, err
    await settle(receiver)
    sent, seconds = out.decode().split()
    latencies.sort()
    p50, p99 = statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.99)] * 1000
    report = f"{len(latencies)}/{sent} traps at {int(sent) / float(seconds):.0f}/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    print(report)
    record_property("latency", report)
    assert len(latencies) >= count * 0.99 and receiver.counts.dropped_rate == 0
    assert p99 < 100, report
