"""SNMP v1/v2c responses and requests over the shared BER reader (agents.ber): where pyasn1 spent ~80% of CPU.

Anything it does not recognise raises BerError, and the caller falls back to pysnmp's own (pyasn1)
decoder, so this reader only has to be right about what it accepts, never complete.
"""

from __future__ import annotations

import socket
from typing import Final, NamedTuple

from agents.ber import BerError, encode_oid, integer, oid_arcs, tlv, uint
from agents.ber import read_tlv as _header
from agents.snmp_values import END_OF_MIB, RawValue, hexstr

# Universal and SNMP application tags.
_INTEGER, _OCTETS, _NULL, _OID, _SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
_IPADDR, _OPAQUE = 0x40, 0x44
_UNSIGNED_TAGS: Final = frozenset({0x41, 0x42, 0x43, 0x46, 0x47})  # Counter32 Gauge32 TimeTicks Counter64 UInt32
_NO_SUCH_OBJECT, _NO_SUCH_INSTANCE, _END_OF_MIB = 0x80, 0x81, 0x82
_RESPONSE_PDU: Final = 0xA2


class FastResponse(NamedTuple):
    """A decoded response: version, ids, status and (OID tuple, raw value) var-binds."""

    version: int
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[tuple[int, ...], RawValue]]


def _value(tag: int, buf: bytes, start: int, end: int) -> RawValue:
    if tag in (_OCTETS, _OPAQUE):
        return buf[start:end]
    if tag == _INTEGER or tag in _UNSIGNED_TAGS:
        return integer(buf, start, end)
    if tag == _OID:
        return ".".join(map(str, oid_arcs(buf[start:end])))
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
    version = integer(buf, start, pos)
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
        numbers.append(integer(buf, start, pos))
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
        varbinds.append((oid_arcs(buf[name_start:name_end]), _value(tag, buf, value_start, value_end)))
    # An error-index past the var-binds is clamped, as pysnmp's decoder does.
    return FastResponse(version, numbers[0], numbers[1], min(numbers[2], len(varbinds)), varbinds)


# Request PDU tags by kind; SET stays on pysnmp's encoder (typed values, and it is rare).
REQUEST_TAGS: Final = {"get": 0xA0, "next": 0xA1, "bulk": 0xA5}
_NULL_VALUE: Final = b"\x05\x00"

def encode_request(
    version: int, community: bytes, kind: str, request_id: int, names: list[tuple[int, ...]], max_repetitions: int = 0
) -> bytes:
    """BER-encode a v1/v2c GET, GETNEXT or GETBULK request whose values are all NULL."""
    varbinds = b"".join(tlv(_SEQUENCE, encode_oid(name) + _NULL_VALUE) for name in names)
    bulk = kind == "bulk"
    pdu = uint(request_id) + uint(0) + uint(max_repetitions if bulk else 0) + tlv(_SEQUENCE, varbinds)
    return tlv(_SEQUENCE, uint(version) + tlv(_OCTETS, community) + tlv(REQUEST_TAGS[kind], pdu))
