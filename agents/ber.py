"""The one strict, bounded BER reader and writer of pocketnoc, shared by poll responses and notifications.

Rules (one set for every caller): one-byte tags only (SNMP uses no others), definite lengths of at
most 4 length octets, every value inside its container, INTEGERs of 1 to 9 octets, OIDs of at most
128 sub-identifiers each below 2**32 (a longer arc is refused as hostile before it costs anything);
a sub-identifier with redundant leading 0x80 octets is read (X.690 forbids it, some agents send it, and
nothing here depends on the exact bytes).
"""

from __future__ import annotations

from typing import Final

MAX_OID_ARCS: Final = 128  # RFC 2578 / 3416: an OID has at most 128 sub-identifiers
MAX_ARC: Final = 0xFFFFFFFF
_CACHE_MAX: Final = 100_000
_arcs_cache: dict[bytes, tuple[int, ...]] = {}
_encoded_cache: dict[tuple[int, ...], bytes] = {}
_text_cache: dict[bytes, str] = {}

INTEGER, OCTETS, NULL, OID, SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30


class BerError(ValueError):
    """The bytes are not BER this reader accepts."""


class BerHostile(BerError):
    """Refused outright: too costly to hand to any decoder (e.g. a 60 KB OID arc), so the datagram is dropped."""


def read_tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one tag and definite length at pos; return (tag, value start, value end)."""
    if pos + 2 > end:
        raise BerError("truncated")
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise BerError("multi-byte tag")
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


def expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    """Read a TLV that must carry `tag`; return its value's (start, end)."""
    got, start, stop = read_tlv(buf, pos, end)
    if got != tag:
        raise BerError(f"expected tag 0x{tag:02x}, got 0x{got:02x}")
    return start, stop


def expect_each(buf: bytes, pos: int, end: int, *tags: int) -> list[tuple[int, int]]:
    """Read consecutive TLVs from pos that must carry `tags`, in order; return each value's (start, end)."""
    spans: list[tuple[int, int]] = []
    for tag in tags:
        spans.append(expect(buf, pos, end, tag))
        pos = spans[-1][1]
    return spans


def integer(buf: bytes, start: int, end: int) -> int:
    """A two's complement INTEGER (also Counter32/64, Gauge32, TimeTicks after their tag)."""
    if not 0 < end - start <= 9:
        raise BerError("bad integer")
    return int.from_bytes(buf[start:end], "big", signed=True)


def oid_arcs(raw: bytes) -> tuple[int, ...]:
    """An OID's content octets as its sub-identifiers (cached: the same OIDs come back on every poll)."""
    cached = _arcs_cache.get(raw)
    if cached is not None:
        return cached
    if not raw or raw[-1] & 0x80:
        raise BerError("bad OID")
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if value > MAX_ARC:  # stop before a crafted arc makes this quadratic
            raise BerHostile("OID arc too large")
        if not byte & 0x80:
            arcs.append(value)
            value = 0
            if len(arcs) >= MAX_OID_ARCS:
                raise BerError("OID too long")
    first = min(arcs[0] // 40, 2)
    oid = (first, arcs[0] - 40 * first, *arcs[1:])
    if len(_arcs_cache) >= _CACHE_MAX:
        _arcs_cache.clear()
    _arcs_cache[raw] = oid
    return oid


def oid_text(raw: bytes) -> str:
    """An OID's content octets as dotted text (cached: traps repeat the same OIDs)."""
    cached = _text_cache.get(raw)
    if cached is None:
        if len(_text_cache) >= _CACHE_MAX:
            _text_cache.clear()
        cached = _text_cache[raw] = ".".join(map(str, oid_arcs(raw)))
    return cached


def length_octets(n: int) -> bytes:
    """A definite length, short form below 128."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, body: bytes) -> bytes:
    """One encoded TLV."""
    return bytes((tag,)) + length_octets(len(body)) + body


def uint(value: int) -> bytes:
    """A non-negative INTEGER in minimal two's complement, with its tag."""
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def encode_oid(oid: tuple[int, ...]) -> bytes:
    """BER-encode an OID with its tag (cached)."""
    cached = _encoded_cache.get(oid)
    if cached is not None:
        return cached
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40) or len(oid) > MAX_OID_ARCS:
        raise ValueError(f"cannot encode OID {oid}")
    body = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        if arc < 0 or arc > MAX_ARC:
            raise ValueError(f"cannot encode OID {oid}")
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    encoded = tlv(OID, bytes(body))
    if len(_encoded_cache) >= _CACHE_MAX:
        _encoded_cache.clear()
    _encoded_cache[oid] = encoded
    return encoded
