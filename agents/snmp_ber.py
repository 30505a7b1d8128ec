"""A strict, bounded BER reader for SNMP v1/v2c responses: the hot path where pyasn1 spends ~80% of CPU.

Anything it does not recognise raises BerError, and the caller falls back to pysnmp's own (pyasn1)
decoder, so this reader only has to be right about what it accepts, never complete.
"""

from __future__ import annotations

import socket
from typing import Final, NamedTuple

from agents.snmp_values import END_OF_MIB, RawValue, hexstr

MAX_OID_ARCS: Final = 128  # RFC 3416: an OID has at most 128 sub-identifiers
_OID_CACHE_MAX: Final = 100_000
_OID_CACHE: dict[bytes, tuple[int, ...]] = {}

# Universal and SNMP application tags.
_INTEGER, _OCTETS, _NULL, _OID, _SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
_IPADDR, _OPAQUE = 0x40, 0x44
_UNSIGNED_TAGS: Final = frozenset({0x41, 0x42, 0x43, 0x46, 0x47})  # Counter32 Gauge32 TimeTicks Counter64 UInt32
_NO_SUCH_OBJECT, _NO_SUCH_INSTANCE, _END_OF_MIB = 0x80, 0x81, 0x82
_RESPONSE_PDU: Final = 0xA2


class BerError(ValueError):
    """The datagram is not an SNMP v1/v2c response this reader accepts."""


class BerHostile(BerError):
    """Refused outright: too costly to hand to any decoder (e.g. a 60 KB OID arc), so the datagram is dropped."""


class FastResponse(NamedTuple):
    """A decoded response: version, ids, status and (OID tuple, raw value) var-binds."""

    version: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[tuple[int, ...], RawValue]]


def _header(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one tag and definite length at pos; return (tag, value start, value end)."""
    if pos + 2 > end:
        raise BerError("truncated")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise BerError("bad length")  # indefinite or absurd lengths are not SNMP
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise BerError("value runs past its container")
    return tag, pos, pos + length


def _integer(buf: bytes, start: int, end: int) -> int:
    if not 0 < end - start <= 9:
        raise BerError("bad integer")
    return int.from_bytes(buf[start:end], "big", signed=True)


def _oid(raw: bytes) -> tuple[int, ...]:
    cached = _OID_CACHE.get(raw)
    if cached is not None:
        return cached
    if not raw or raw[-1] & 0x80:
        raise BerError("bad OID")
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if value > 0xFFFFFFFF:  # arcs are 32-bit; stop before a crafted arc makes this quadratic
            raise BerHostile("OID arc too large")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    if len(arcs) >= MAX_OID_ARCS or value > 0xFFFFFFFF:
        raise BerError("OID too long")
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    oid = (*head, *arcs[1:])
    if len(_OID_CACHE) >= _OID_CACHE_MAX:
        _OID_CACHE.clear()
    _OID_CACHE[raw] = oid
    return oid


def _value(tag: int, buf: bytes, start: int, end: int) -> RawValue:
    if tag in (_OCTETS, _OPAQUE):
        return buf[start:end]
    if tag == _INTEGER or tag in _UNSIGNED_TAGS:
        return _integer(buf, start, end)
    if tag == _OID:
        return ".".join(map(str, _oid(buf[start:end])))
    if tag == _IPADDR:
        raw = buf[start:end]
        return socket.inet_ntoa(raw) if len(raw) == 4 else hexstr(raw)
    if tag == _END_OF_MIB:
        return END_OF_MIB
    if tag in (_NULL, _NO_SUCH_OBJECT, _NO_SUCH_INSTANCE):
        return None
    raise BerError(f"unexpected value tag 0x{tag:02x}")


def parse_response(buf: bytes) -> FastResponse:
    """Decode a whole v1/v2c GetResponse message, or raise BerError."""
    tag, pos, end = _header(buf, 0, len(buf))
    if tag != _SEQUENCE or end != len(buf):
        raise BerError("not one SNMP message")
    tag, start, pos = _header(buf, pos, end)
    if tag != _INTEGER:
        raise BerError("no version")
    version = _integer(buf, start, pos)
    if version not in (0, 1):
        raise BerError("not v1/v2c")
    tag, _start, pos = _header(buf, pos, end)  # community: the dispatcher matches on request-id
    if tag != _OCTETS:
        raise BerError("no community")
    tag, pos, pdu_end = _header(buf, pos, end)
    if tag != _RESPONSE_PDU or pdu_end != end:
        raise BerError("not a response PDU")
    numbers = []
    for _ in range(3):  # request-id, error-status, error-index
        tag, start, pos = _header(buf, pos, pdu_end)
        if tag != _INTEGER:
            raise BerError("bad PDU header")
        numbers.append(_integer(buf, start, pos))
    tag, pos, list_end = _header(buf, pos, pdu_end)
    if tag != _SEQUENCE or list_end != pdu_end:
        raise BerError("bad var-bind list")
    varbinds: list[tuple[tuple[int, ...], RawValue]] = []
    while pos < list_end:
        tag, start, pos = _header(buf, pos, list_end)
        if tag != _SEQUENCE:
            raise BerError("bad var-bind")
        tag, name_start, name_end = _header(buf, start, pos)
        if tag != _OID:
            raise BerError("bad var-bind name")
        tag, value_start, value_end = _header(buf, name_end, pos)
        if value_end != pos:
            raise BerError("trailing bytes in var-bind")
        varbinds.append((_oid(buf[name_start:name_end]), _value(tag, buf, value_start, value_end)))
    # An error-index past the var-binds is clamped, as pysnmp's decoder does.
    return FastResponse(version, numbers[0], numbers[1], min(numbers[2], len(varbinds)), varbinds)


# Request PDU tags by kind; SET stays on pysnmp's encoder (typed values, and it is rare).
REQUEST_TAGS: Final = {"get": 0xA0, "next": 0xA1, "bulk": 0xA5}
_NULL_VALUE: Final = b"\x05\x00"
_ENCODED_OIDS: dict[tuple[int, ...], bytes] = {}


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _uint(value: int) -> bytes:
    """A non-negative INTEGER in minimal two's complement."""
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_oid(oid: tuple[int, ...]) -> bytes:
    """BER-encode an OID (with its tag), cached: the same OIDs are asked for on every poll."""
    cached = _ENCODED_OIDS.get(oid)
    if cached is not None:
        return cached
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40) or len(oid) > MAX_OID_ARCS:
        raise ValueError(f"cannot encode OID {oid}")
    body = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0 or arc > 0xFFFFFFFF:
            raise ValueError(f"cannot encode OID {oid}")
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    encoded = _tlv(_OID, bytes(body))
    if len(_ENCODED_OIDS) >= _OID_CACHE_MAX:
        _ENCODED_OIDS.clear()
    _ENCODED_OIDS[oid] = encoded
    return encoded


def encode_request(
    version: int, community: bytes, kind: str, request_id: int, names: list[tuple[int, ...]], max_repetitions: int = 0
) -> bytes:
    """BER-encode a v1/v2c GET, GETNEXT or GETBULK request whose values are all NULL."""
    varbinds = b"".join(_tlv(_SEQUENCE, encode_oid(name) + _NULL_VALUE) for name in names)
    bulk = kind == "bulk"
    pdu = _uint(request_id) + _uint(0) + _uint(max_repetitions if bulk else 0) + _tlv(_SEQUENCE, varbinds)
    return _tlv(_SEQUENCE, _uint(version) + _tlv(_OCTETS, community) + _tlv(REQUEST_TAGS[kind], pdu))
