"""SNMP v1/v2c notifications and the SNMPv3 header over the shared BER reader (agents.ber; pyasn1 is ~30x slower)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Final

from agents.ber import BerError, expect, expect_each, integer, read_tlv, tlv
from agents.ber import oid_text as _oid_text
from agents.snmp_values import hexstr
from agents.traps_model import octets_text

# Outer message versions.
V1, V2C, V3 = 0, 1, 3
# PDU tags (context-specific, constructed).
TRAP_V1: Final = 0xA4
GET_RESPONSE: Final = 0xA2
INFORM: Final = 0xA6
TRAP_V2: Final = 0xA7

_SEQ, _INT, _OCTETS, _NULL, _OID = 0x30, 0x02, 0x04, 0x05, 0x06
_IPADDR, _TICKS = 0x40, 0x43
_UNSIGNED_TAGS: Final = frozenset({0x41, 0x42, 0x43, 0x46, 0x47})  # Counter32 Gauge32 TimeTicks Counter64 UInteger32
_EXCEPTIONS: Final = {0x80: "noSuchObject", 0x81: "noSuchInstance", 0x82: "endOfMibView"}


def oid_text(buf: bytes, start: int, stop: int) -> str:
    """Decode OID content octets to dotted text."""
    return _oid_text(buf[start:stop])


def value_text(buf: bytes, tag: int, start: int, stop: int, cap: int) -> str:
    """Render one var-bind value as display text."""
    if tag == _OCTETS:
        return octets_text(buf[start:stop], cap)
    if tag == _INT or tag in _UNSIGNED_TAGS:
        return str(integer(buf, start, stop))
    if tag == _OID:
        return oid_text(buf, start, stop)
    if tag == _IPADDR:
        raw = buf[start:stop]
        return socket.inet_ntoa(raw) if len(raw) == 4 else hexstr(raw[:cap]) or ""
    if tag == _NULL:
        return ""
    if tag in _EXCEPTIONS:
        return _EXCEPTIONS[tag]
    return hexstr(buf[start:stop]) or ""  # Opaque, NsapAddress, unknown application types


@dataclass(slots=True)
class Notification:
    """A decoded v1/v2c notification, var-binds rendered as text (only the first max_varbinds are decoded)."""

    version: int
    community: bytes
    pdu_tag: int
    request_id: int
    varbinds: list[tuple[str, str]]
    truncated: bool
    # v1 only
    enterprise: str = ""
    agent_address: str = ""
    generic: int = 0
    specific: int = 0
    uptime: int | None = None
    # Where the request-id and var-bind list sit, to build an inform's response from the same bytes.
    reqid_span: tuple[int, int] = (0, 0)
    varbinds_span: tuple[int, int] = (0, 0)


def _last_varbinds(
    buf: bytes, start: int, stop: int, pdu: str, max_varbinds: int, cap: int
) -> tuple[list[tuple[str, str]], bool]:
    """The variable bindings at start, which must be the last field of the PDU ending at stop."""
    vl_start, vl_stop = expect(buf, start, stop, _SEQ)
    if vl_stop != stop:
        raise BerError(f"trailing bytes in {pdu}")
    return _varbinds(buf, vl_start, vl_stop, max_varbinds, cap)


def _varbinds(buf: bytes, start: int, stop: int, max_varbinds: int, cap: int) -> tuple[list[tuple[str, str]], bool]:
    result: list[tuple[str, str]] = []
    pos = start
    while pos < stop:
        if len(result) >= max_varbinds:
            return result, True
        vb_start, vb_stop = expect(buf, pos, stop, _SEQ)
        name_start, name_stop = expect(buf, vb_start, vb_stop, _OID)
        tag, val_start, val_stop = read_tlv(buf, name_stop, vb_stop)
        if val_stop != vb_stop:
            raise BerError("trailing bytes in var-bind")
        result.append((oid_text(buf, name_start, name_stop), value_text(buf, tag, val_start, val_stop, cap)))
        pos = vb_stop
    return result, False


def message_version(buf: bytes) -> int:
    """Return the SNMP message version (0, 1, 3), or raise BerError."""
    start, _stop = expect(buf, 0, len(buf), _SEQ)
    v_start, v_stop = expect(buf, start, len(buf), _INT)
    return integer(buf, v_start, v_stop)


def _message(buf: bytes) -> tuple[int, int]:
    """The value span of the message's outer SEQUENCE, which must be the whole datagram."""
    start, stop = expect(buf, 0, len(buf), _SEQ)
    if stop != len(buf):
        raise BerError("trailing bytes after message")
    return start, stop


def decode_notification(buf: bytes, max_varbinds: int, cap: int) -> Notification:
    """Decode a v1 Trap-PDU or a v2c SNMPv2-Trap/InformRequest message; BerError for anything else."""
    msg_start, msg_stop = _message(buf)
    (v_start, v_stop), (c_start, c_stop) = expect_each(buf, msg_start, msg_stop, _INT, _OCTETS)
    version = integer(buf, v_start, v_stop)
    tag, p_start, p_stop = read_tlv(buf, c_stop, msg_stop)
    if p_stop != msg_stop:
        raise BerError("trailing bytes after PDU")
    community = buf[c_start:c_stop]
    if version == V1 and tag == TRAP_V1:
        return _decode_v1(buf, community, p_start, p_stop, max_varbinds, cap)
    if version != V2C or tag not in (TRAP_V2, INFORM):
        raise BerError(f"not a notification (version {version}, PDU 0x{tag:02x})")
    # request-id, error-status, error-index
    (r_start, r_stop), _status, (_i, ei_stop) = expect_each(buf, p_start, p_stop, _INT, _INT, _INT)
    varbinds, truncated = _last_varbinds(buf, ei_stop, p_stop, "PDU", max_varbinds, cap)
    return Notification(
        version, community, tag, integer(buf, r_start, r_stop), varbinds, truncated,
        reqid_span=(p_start, r_stop), varbinds_span=(ei_stop, p_stop),
    )  # fmt: skip


def _decode_v1(buf: bytes, community: bytes, start: int, stop: int, max_varbinds: int, cap: int) -> Notification:
    e_start, e_stop = expect(buf, start, stop, _OID)
    tag, a_start, a_stop = read_tlv(buf, e_stop, stop)
    if tag != _IPADDR:
        raise BerError("v1 agent-addr is not an IpAddress")
    generic, specific, (t_start, t_stop) = expect_each(buf, a_stop, stop, _INT, _INT, _TICKS)
    varbinds, truncated = _last_varbinds(buf, t_stop, stop, "Trap-PDU", max_varbinds, cap)
    return Notification(
        V1, community, TRAP_V1, 0, varbinds, truncated,
        enterprise=oid_text(buf, e_start, e_stop),
        agent_address=value_text(buf, _IPADDR, a_start, a_stop, cap),
        generic=integer(buf, *generic),
        specific=integer(buf, *specific),
        uptime=integer(buf, t_start, t_stop),
    )  # fmt: skip


def inform_response(buf: bytes, note: Notification) -> bytes:
    """Build the v2c Response to an InformRequest: same request-id and var-binds, no error."""
    r_start, r_stop = note.reqid_span
    vb_start, vb_stop = note.varbinds_span
    pdu = buf[r_start:r_stop] + b"\x02\x01\x00\x02\x01\x00" + buf[vb_start:vb_stop]
    body = b"\x02\x01\x01" + tlv(_OCTETS, note.community) + tlv(GET_RESPONSE, pdu)
    return tlv(_SEQ, body)


@dataclass(frozen=True, slots=True)
class V3Header:
    """The clear-text part of an SNMPv3 message: enough to check the user before pysnmp's costly decode."""

    flags: int
    security_model: int
    engine_id: bytes
    user: bytes

    @property
    def level(self) -> int:
        """Security level of the message: 1 noAuthNoPriv, 2 authNoPriv, 3 authPriv."""
        if self.flags & 0x01:
            return 3 if self.flags & 0x02 else 2
        return 1


def v3_header(buf: bytes) -> V3Header:
    """Read msgFlags, msgSecurityModel, msgAuthoritativeEngineID and msgUserName of a v3 message."""
    msg_start, msg_stop = _message(buf)
    # msgVersion, msgGlobalData, msgSecurityParameters (then the scoped PDU, left to pysnmp)
    _version, (g_start, g_stop), (sp_start, sp_stop) = expect_each(buf, msg_start, msg_stop, _INT, _SEQ, _OCTETS)
    # msgID, msgMaxSize, msgFlags, then msgSecurityModel
    _id, _max_size, (f_start, f_stop) = expect_each(buf, g_start, g_stop, _INT, _INT, _OCTETS)
    if f_stop - f_start != 1:
        raise BerError("bad msgFlags")
    m_start, m_stop = expect(buf, f_stop, g_stop, _INT)
    u_start, u_stop = expect(buf, sp_start, sp_stop, _SEQ)  # UsmSecurityParameters
    (e_start, e_stop), _boots, _time, (n_start, n_stop) = expect_each(buf, u_start, u_stop, _OCTETS, _INT, _INT, _OCTETS)
    return V3Header(buf[f_start], integer(buf, m_start, m_stop), buf[e_start:e_stop], buf[n_start:n_stop])
