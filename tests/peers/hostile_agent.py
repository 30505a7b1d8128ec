"""A tiny asyncio SNMP v1/v2c responder that misbehaves on purpose (snmpd and snmpsim cannot).

Modes:
  "nasty"   - system group and a 3-row ifTable full of HTML, ANSI escapes, NULs, invalid UTF-8,
              and a ~63 KB sysName (near the largest value one UDP datagram can carry).
  "endless" - every GETNEXT/GETBULK inside ifTable returns more, ever-increasing rows.
  "loop"    - GETNEXT/GETBULK inside ifTable answer the first row again and again.
  "small"   - answers tooBig to any GET of more than 3 var-binds.
  "garbage" - answers every request with bytes that are not BER.
  "silent"  - reads requests and never answers.
The system group answers GET in every mode except "garbage" and "silent".
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905
from pysnmp.proto.api import verdec

IF_TABLE = (1, 3, 6, 1, 2, 1, 2, 2, 1)
SYS = (1, 3, 6, 1, 2, 1, 1)
NASTY_DESCR = b"<script>alert('descr')</script>\x1b[31mRED\x1b[0m\x00NUL\xff\xfe\xc3\x28 end"
NASTY_ALIAS = b"<img src=x onerror=alert(1)>\x1b]0;pwned\x07\x00\x00\xc0\xaf"
BIG_NAME_BYTES = 63_000
BIG_NAME = b"<b>" + b"\x1b[2J" + b"A" * (BIG_NAME_BYTES - 7)


def _system() -> dict[tuple[int, ...], Any]:
    return {
        (*SYS, 1, 0): rfc1902.OctetString(NASTY_DESCR),
        (*SYS, 2, 0): rfc1902.ObjectIdentifier((1, 3, 6, 1, 4, 1, 99999, 1)),
        (*SYS, 3, 0): rfc1902.TimeTicks(12345),
        (*SYS, 4, 0): rfc1902.OctetString(b"ops\x00@example"),
        (*SYS, 5, 0): rfc1902.OctetString(BIG_NAME),
        (*SYS, 6, 0): rfc1902.OctetString(b"\xff\xff<i>basement</i>"),
    }


def _nasty_mib() -> dict[tuple[int, ...], Any]:
    mib = _system()
    for i in (1, 2, 3):
        mib[(*IF_TABLE, 1, i)] = rfc1902.Integer(i)
        mib[(*IF_TABLE, 2, i)] = rfc1902.OctetString(NASTY_DESCR + str(i).encode())
        mib[(*IF_TABLE, 3, i)] = rfc1902.Integer(6)
        mib[(*IF_TABLE, 6, i)] = rfc1902.OctetString(b"\x00\x1b<>\xff\x00")
        mib[(*IF_TABLE, 8, i)] = rfc1902.Integer(1)
        mib[(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18, i)] = rfc1902.OctetString(NASTY_ALIAS)
    return mib


class HostileAgent(asyncio.DatagramProtocol):
    """Answers SNMP requests according to `mode`; `requests` counts what it received."""

    def __init__(self, mode: str, row_bytes: int = 16) -> None:
        self.mode = mode
        self.row_value = rfc1902.OctetString(b"x" * row_bytes)
        self.mib = _nasty_mib() if mode == "nasty" else _system()
        self.keys = sorted(self.mib)
        self.requests = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests += 1
        if self.mode == "silent" or self.transport is None:
            return
        if self.mode == "garbage":
            self.transport.sendto(b"\x30\x84\xff\xff\xff\xff" + b"\x00" * 20, addr)
            return
        try:
            reply = self._reply(data)
        except Exception:  # a request we cannot parse: ignore it like a real agent
            return
        self.transport.sendto(reply, addr)

    def _reply(self, data: bytes) -> bytes:
        pmod = api.PROTOCOL_MODULES[verdec.decode_message_version(data)]
        msg, _ = decoder.decode(data, asn1Spec=pmod.Message())
        req = pmod.apiMessage.get_pdu(msg)
        rsp_msg = pmod.apiMessage.get_response(msg)
        rsp = pmod.apiMessage.get_pdu(rsp_msg)
        names = [tuple(name) for name, _ in pmod.apiPDU.get_varbinds(req)]
        if req.isSameTypeWith(pmod.GetRequestPDU()) and self.mode == "small" and len(names) > 3:
            pmod.apiPDU.set_error_status(rsp, 1)  # tooBig, the way tiny embedded agents answer
            out = [(n, rfc1905.noSuchObject) for n in names]
        elif req.isSameTypeWith(pmod.GetRequestPDU()):
            out = [(n, self.mib.get(n, rfc1905.noSuchObject)) for n in names]
        elif req.isSameTypeWith(pmod.GetNextRequestPDU()):
            out = [self._next(n) for n in names]
        elif hasattr(pmod, "GetBulkRequestPDU") and req.isSameTypeWith(pmod.GetBulkRequestPDU()):
            reps = min(int(pmod.apiBulkPDU.get_max_repetitions(req)), 200)
            out = []
            current = list(names)
            for _ in range(reps):
                row = [self._next(n) for n in current]
                out.extend(row)
                current = [n for n, _ in row]
        else:
            out = [(n, rfc1905.noSuchObject) for n in names]
        pmod.apiPDU.set_varbinds(rsp, [(rfc1902.ObjectName(n), v) for n, v in out])
        return bytes(encoder.encode(rsp_msg))

    def _next(self, name: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        table = len(name) > len(IF_TABLE) and name[: len(IF_TABLE)] == IF_TABLE
        if self.mode == "endless" and table:
            column = name[: len(IF_TABLE) + 1]
            index = name[len(IF_TABLE) + 1] + 1 if len(name) > len(column) else 1
            return (*column, index), self.row_value
        if self.mode == "loop" and table:
            return (*name[: len(IF_TABLE) + 1], 1), self.row_value
        pos = bisect.bisect_right(self.keys, name)
        if pos < len(self.keys):
            key = self.keys[pos]
            return key, self.mib[key]
        return name, rfc1905.endOfMibView


@asynccontextmanager
async def hostile_agent(mode: str, row_bytes: int = 16) -> AsyncIterator[HostileAgent]:
    """Run a HostileAgent on 127.0.0.1:<free port> in the current event loop."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(lambda: HostileAgent(mode, row_bytes), local_addr=("127.0.0.1", 0))
    try:
        yield protocol
    finally:
        transport.close()
