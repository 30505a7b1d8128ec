"""One BER reader for poll responses and notifications: the same bytes get the same verdict on both paths."""

from __future__ import annotations

import pytest

from agents import ber
from agents.snmp_ber import parse_response
from agents.traps_ber import decode_notification


def _response(oid_body: bytes) -> bytes:
    varbind = ber.tlv(ber.SEQUENCE, ber.tlv(ber.OID, oid_body) + b"\x05\x00")
    pdu = ber.uint(7) + ber.uint(0) + ber.uint(0) + ber.tlv(ber.SEQUENCE, varbind)
    return ber.tlv(ber.SEQUENCE, ber.uint(1) + ber.tlv(ber.OCTETS, b"public") + ber.tlv(0xA2, pdu))


def _trap(oid_body: bytes) -> bytes:
    varbind = ber.tlv(ber.SEQUENCE, ber.tlv(ber.OID, oid_body) + b"\x05\x00")
    pdu = ber.uint(7) + ber.uint(0) + ber.uint(0) + ber.tlv(ber.SEQUENCE, varbind)
    return ber.tlv(ber.SEQUENCE, ber.uint(1) + ber.tlv(ber.OCTETS, b"public") + ber.tlv(0xA7, pdu))


def _both(oid_body: bytes) -> tuple[str, str]:
    polled = parse_response(_response(oid_body)).varbinds[0][0]
    trapped = decode_notification(_trap(oid_body), 10, 100).varbinds[0][0]
    return ".".join(map(str, polled)), trapped


def test_a_plain_oid_reads_alike() -> None:
    assert _both(ber.encode_oid((1, 3, 6, 1, 2, 1, 1, 5, 0))[2:]) == ("1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.5.0")


def test_a_redundant_leading_octet_is_read_on_both_paths() -> None:
    # 1.3.6.1.4.1.9 with the last arc written as 0x80 0x09 (X.690 forbids it; agents send it)
    assert _both(bytes([0x2B, 6, 1, 4, 1, 0x80, 0x09])) == ("1.3.6.1.4.1.9", "1.3.6.1.4.1.9")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (bytes([0x2B]) + b"\xff" * 60_000 + b"\x01", ber.BerHostile),  # a 60 KB arc: refused before it costs
        (bytes([0x2B]) + b"\x01" * 128, ber.BerError),  # 129 sub-identifiers
        (bytes([0x2B, 0x86]), ber.BerError),  # ends inside a sub-identifier
    ],
)
def test_bad_oids_are_refused_alike(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_response(_response(body))
    with pytest.raises(error):
        decode_notification(_trap(body), 10, 100)


def test_multi_byte_tags_and_long_lengths_are_refused() -> None:
    with pytest.raises(ber.BerError, match="multi-byte tag"):
        ber.read_tlv(b"\x1f\x81\x01\x00", 0, 4)
    with pytest.raises(ber.BerError, match="bad length"):
        ber.read_tlv(b"\x04\x85\x00\x00\x00\x00\x01\x00", 0, 8)
    with pytest.raises(ber.BerError, match="bad length"):
        ber.read_tlv(b"\x30\x80\x00\x00", 0, 4)  # indefinite length
