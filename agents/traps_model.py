"""The Trap record a receiver hands on, well-known trap names, and hostile-safe value text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pysnmp.proto import rfc1902

from agents.snmp_values import HEX_CAP, hexstr, raw_value

TrapVersion = Literal["1", "2c", "3"]

SNMP_TRAPS: Final = "1.3.6.1.6.3.1.1.5"
WELL_KNOWN_TRAPS: Final[dict[str, str]] = {
    f"{SNMP_TRAPS}.1": "coldStart",
    f"{SNMP_TRAPS}.2": "warmStart",
    f"{SNMP_TRAPS}.3": "linkDown",
    f"{SNMP_TRAPS}.4": "linkUp",
    f"{SNMP_TRAPS}.5": "authenticationFailure",
    f"{SNMP_TRAPS}.6": "egpNeighborLoss",
}
SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
SNMP_TRAP_OID: Final = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS: Final = "1.3.6.1.6.3.18.1.3.0"
SNMP_TRAP_ENTERPRISE: Final = "1.3.6.1.6.3.1.1.4.3.0"
IF_INDEX_PREFIX: Final = "1.3.6.1.2.1.2.2.1.1."

# A short value with an inner NUL or a C0 control byte is binary (a MAC, an engine ID) and shown as hex;
# BS, TAB, LF, CR, BEL and ESC stay text (terminal escape sequences are text; the UI escapes them).
_TEXT_BYTES: Final = bytes(range(0x20, 0x100)) + b"\x07\x08\t\n\r\x1b"


def small_int(text: str) -> int | None:
    """Parse a rendered unsigned number (TimeTicks, an index); None for anything else, however hostile."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 20 else None


def _cut_utf8(raw: bytes, cap: int) -> bytes:
    """Cut raw to at most cap bytes without splitting a UTF-8 sequence at the end."""
    raw = raw[:cap]
    i = len(raw)
    while i > 0 and len(raw) - i < 3 and raw[i - 1] & 0xC0 == 0x80:
        i -= 1
    if i > 0 and raw[i - 1] >= 0xC0:
        lead = raw[i - 1]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if len(raw) - (i - 1) < need:
            return raw[: i - 1]
    return raw


def octets_text(raw: bytes, cap: int) -> str:
    """Device bytes as display text: UTF-8 (bad bytes replaced), NULs gone, capped; short binary as hex."""
    if len(raw) <= HEX_CAP and raw.rstrip(b"\x00").translate(None, _TEXT_BYTES):
        return hexstr(raw) or ""
    if len(raw) > cap:
        raw = _cut_utf8(raw, cap)
    return raw.decode("utf-8", errors="replace").replace("\x00", "")


def asn1_text(value: Any, cap: int) -> str:
    """Render a pysnmp/pyasn1 value (from the v3 path) like the BER fast path renders it."""
    if isinstance(value, rfc1902.Opaque):
        return hexstr(value.asOctets()) or ""
    raw = raw_value(value)
    if isinstance(raw, bytes):
        return octets_text(raw, cap)
    if isinstance(raw, int | str):
        return str(raw)
    return ""  # Null, noSuchObject, noSuchInstance, endOfMibView


@dataclass(frozen=True, slots=True)
class Trap:
    """One received notification, as text; `varbinds` excludes sysUpTime.0 and snmpTrapOID.0."""

    source: str
    port: int
    version: TrapVersion
    community_or_user: str
    trap_oid: str
    uptime: int | None
    varbinds: tuple[tuple[str, str], ...]
    ts: float
    name: str
    truncated: bool = False
    inform: bool = False

    @property
    def if_index(self) -> int | None:
        """The interface index from an ifIndex var-bind (linkDown/linkUp carry one), else None."""
        for oid, value in self.varbinds:
            if oid.startswith(IF_INDEX_PREFIX):
                index = small_int(oid[len(IF_INDEX_PREFIX) :])
                return index if index is not None else small_int(value)
        return None

    def value(self, oid: str) -> str | None:
        """The value of the first var-bind named oid, or None."""
        return next((v for o, v in self.varbinds if o == oid), None)

    def varbind_text(self) -> str:
        """The var-binds as 'OID = value' lines (raw text: escape it where it is shown)."""
        return "\n".join(f"{oid} = {value}" for oid, value in self.varbinds)


def trap_name(trap_oid: str) -> str:
    """Friendly name of a well-known trap, else the trap OID itself."""
    return WELL_KNOWN_TRAPS.get(trap_oid, trap_oid)


def v1_trap_oid(enterprise: str, generic: int, specific: int) -> str:
    """RFC 3584 section 3.1: generic 0-5 map to snmpTraps.(g+1), enterpriseSpecific to enterprise.0.specific."""
    if 0 <= generic <= 5:
        return f"{SNMP_TRAPS}.{generic + 1}"
    return f"{enterprise}.0.{specific}"


def split_v2(varbinds: Sequence[tuple[str, str]]) -> tuple[str | None, int | None, list[tuple[str, str]]]:
    """Take snmpTrapOID.0 and sysUpTime.0 out of a v2 var-bind list: (trap OID, uptime, the rest)."""
    trap_oid: str | None = None
    uptime: int | None = None
    rest: list[tuple[str, str]] = []
    for oid, value in varbinds:
        if oid == SNMP_TRAP_OID and trap_oid is None:
            trap_oid = value
        elif oid == SYS_UPTIME and uptime is None:
            uptime = small_int(value)
        else:
            rest.append((oid, value))
    return trap_oid, uptime, rest
