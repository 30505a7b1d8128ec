"""Typed decoding of SNMP values and OID helpers shared by the SNMP client and profiles."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Final

from pyasn1.type import univ
from pysnmp.proto import rfc1155, rfc1902, rfc1905

# Longest text kept from a device for one fact or table cell (characters).
TEXT_CAP: Final = 1024
# Longest binary value rendered as hex (bytes); a MAC is 6, an EUI-64 8.
HEX_CAP: Final = 64

Value = int | str | None


class EndOfMib:
    """Marker for endOfMibView: the walk is over, and it is never a value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "END_OF_MIB"


END_OF_MIB: Final = EndOfMib()

# A value as decoded off the wire: OCTET STRINGs stay bytes until we know if they are text or binary.
RawValue = int | str | bytes | EndOfMib | None

# Decoder kinds, looked up once per pyasn1 class and cached (the hot path is a dict hit).
_INT, _OCTETS, _OID, _IP, _ABSENT, _END = range(6)
_KIND_BY_TYPE: dict[type, int] = {}


def _classify(cls: type) -> int:
    """Map a pyasn1/pysnmp value class to one of the decoder kinds."""
    if issubclass(cls, rfc1905.EndOfMibView):
        return _END
    if issubclass(cls, univ.Null):  # noSuchObject, noSuchInstance, Null
        return _ABSENT
    if issubclass(cls, rfc1902.IpAddress | rfc1155.IpAddress):
        return _IP
    if issubclass(cls, univ.OctetString):
        return _OCTETS
    if issubclass(cls, univ.ObjectIdentifier):
        return _OID
    if issubclass(cls, univ.Integer):
        return _INT
    return _ABSENT


def text(raw: bytes) -> str:
    """Decode device bytes as capped UTF-8 text with NULs removed and bad bytes replaced."""
    # Cap before decoding so a 64 KB string costs no more than a 4 KB one.
    raw = raw[: TEXT_CAP * 4].replace(b"\x00", b"")
    return raw.decode("utf-8", errors="replace")[:TEXT_CAP]


def hexstr(raw: bytes) -> str | None:
    """Render binary (a PhysAddress) as colon-separated hex, None when empty."""
    if not raw:
        return None
    return ":".join(f"{b:02x}" for b in raw[:HEX_CAP])


def raw_value(val: Any) -> RawValue:
    """Turn one pysnmp value into int/str, bytes for OCTET STRING, None for absent, END_OF_MIB at the end."""
    cls = type(val)
    kind = _KIND_BY_TYPE.get(cls)
    if kind is None:
        kind = _KIND_BY_TYPE[cls] = _classify(cls)
    if kind == _INT:
        return int(val)
    if kind == _OCTETS:
        return bytes(val.asOctets())
    if kind == _OID:
        return ".".join(map(str, val.asTuple()))[:TEXT_CAP]
    if kind == _IP:
        raw = val.asOctets()
        return socket.inet_ntoa(raw) if len(raw) == 4 else hexstr(raw)
    if kind == _END:
        return END_OF_MIB
    return None


def finish(raw: RawValue, binary: bool = False) -> int | str | EndOfMib | None:
    """Render OCTET STRING bytes as capped text, or as hex for binary columns (PhysAddress)."""
    if isinstance(raw, bytes):
        return hexstr(raw) if binary else text(raw)
    return raw


def finish_value(raw: RawValue, binary: bool = False) -> Value:
    """Like finish, but endOfMibView is just absent (for GET and SET answers)."""
    value = finish(raw, binary)
    return None if isinstance(value, EndOfMib) else value


def value_size(value: object) -> int:
    """Approximate bytes a decoded value holds, for the walk's max_bytes budget."""
    return len(value) if isinstance(value, str) else 8


def parse_oid(oid: str | tuple[int, ...]) -> tuple[int, ...]:
    """Parse a dotted numeric OID ("1.3.6.1.2.1.1.1.0", a leading dot allowed) into a tuple."""
    if isinstance(oid, tuple):
        return oid
    try:
        parts = tuple(int(p) for p in oid.strip().lstrip(".").split("."))
    except ValueError:
        raise ValueError(f"not a numeric OID: {oid!r}") from None
    if len(parts) < 2 or any(p < 0 for p in parts):
        raise ValueError(f"not a numeric OID: {oid!r}")
    return parts


def oid_str(oid: tuple[int, ...]) -> str:
    """Format an OID tuple as dotted text."""
    return ".".join(map(str, oid))


_SET_ENCODERS: dict[type, Callable[[Any], Any]] = {
    bool: lambda v: rfc1902.Integer32(int(v)),
    int: rfc1902.Integer32,
    str: lambda v: rfc1902.OctetString(v.encode("utf-8")),
    bytes: rfc1902.OctetString,
}


def encode_for_set(value: object) -> Any:
    """Encode a Python value for SET: int -> INTEGER, str/bytes -> OCTET STRING, pyasn1 as is."""
    encoder = _SET_ENCODERS.get(type(value))
    if encoder is not None:
        return encoder(value)
    if isinstance(value, univ.Integer | univ.OctetString | univ.ObjectIdentifier):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} for SNMP SET")
