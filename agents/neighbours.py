"""A device's neighbours per port from LLDP-MIB, CISCO-CDP-MIB and the bridge forwarding table (BRIDGE-MIB, Q-BRIDGE).

Parsing is pure (walked columns in, Neighbour rows out) so real recordings can be checked without an agent;
`read_neighbours` walks the tables on a live target. Every text from the device is cleaned and capped here:
a neighbour name is whatever another device chose to announce.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Final

from agents.base import CollectError, Target
from agents.net_common import clean_text
from agents.snmp_client import SnmpClient
from agents.snmp_values import Value

NAME_MAX: Final = 128  # characters kept of a neighbour's name, port or platform
FDB_MAX: Final = 2_000  # forwarding-table entries kept per device
_LLDP_REM: Final = "1.0.8802.1.1.2.1.4.1.1"
_LLDP_MAN: Final = "1.0.8802.1.1.2.1.4.2.1"  # lldpRemManAddrEntry, walked whole (address is in the index)
_LLDP_LOC_PORT: Final = "1.0.8802.1.1.2.1.3.7.1"
LLDP: Final = {
    "chassis_subtype": f"{_LLDP_REM}.4",
    "chassis": f"{_LLDP_REM}.5",
    "port_subtype": f"{_LLDP_REM}.6",
    "port_id": f"{_LLDP_REM}.7",
    "port_descr": f"{_LLDP_REM}.8",
    "sys_name": f"{_LLDP_REM}.9",
    "sys_descr": f"{_LLDP_REM}.10",
}
LLDP_LOCAL: Final = {"port_id": f"{_LLDP_LOC_PORT}.3", "port_descr": f"{_LLDP_LOC_PORT}.4"}
_CDP: Final = "1.3.6.1.4.1.9.9.23.1.2.1.1"
CDP: Final = {"address": f"{_CDP}.4", "device_id": f"{_CDP}.6", "port": f"{_CDP}.7", "platform": f"{_CDP}.8"}
IF_NAME: Final = {"if_descr": "1.3.6.1.2.1.2.2.1.2", "if_name": "1.3.6.1.2.1.31.1.1.1.1"}
BRIDGE_PORT_IFINDEX: Final = "1.3.6.1.2.1.17.1.4.1.2"
FDB: Final = {"dot1d_port": "1.3.6.1.2.1.17.4.3.1.2", "dot1q_port": "1.3.6.1.2.1.17.7.1.2.2.1.2"}
BINARY: Final = frozenset({LLDP["chassis"], LLDP["port_id"], CDP["address"]})
# LLDP chassis/port subtypes whose id is text (interfaceAlias/Name, local, portComponent/chassisComponent).
_TEXT_SUBTYPES: Final = {"chassis": (1, 2, 6, 7), "port": (1, 2, 5, 7)}

_UNSAFE: Final = re.compile("[\x80-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
Columns = Mapping[str, Mapping[str, Value]]


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One thing seen on one local port: a device (LLDP/CDP: name, port, address) or a MAC (the forwarding table)."""

    protocol: str  # lldp, cdp or fdb
    local_port: str
    remote_name: str = ""
    remote_port: str = ""
    remote_address: str = ""
    remote_chassis: str = ""
    remote_descr: str = ""

    def public(self) -> dict[str, str]:
        return asdict(self)


def safe(value: Value, limit: int = NAME_MAX) -> str:
    """Device text made safe to store and show: control, C1 and bidi-override characters dropped, one line, capped."""
    if value is None:
        return ""
    return _UNSAFE.sub("", clean_text(str(value), limit * 2).replace("\t", " ").replace("\n", " ")).strip()[:limit]


def _hex_text(value: Value) -> str:
    """A hex-rendered OCTET STRING ("41:42") turned back into text, when it is text."""
    if not isinstance(value, str):
        return ""
    try:
        raw = bytes.fromhex(value.replace(":", ""))
    except ValueError:
        return value
    return raw.decode("utf-8", errors="replace")


def _id_text(value: Value, subtype: Value, kind: str) -> str:
    """An LLDP chassis or port id: text for the text subtypes, else the MAC/hex (an address subtype as an IP)."""
    if isinstance(subtype, int) and subtype in _TEXT_SUBTYPES[kind]:
        return safe(_hex_text(value))
    if isinstance(value, str) and kind == "chassis" and subtype == 5:
        raw = bytes.fromhex(value.replace(":", "")) if all(c in "0123456789abcdef:" for c in value) else b""
        if len(raw) == 5 and raw[0] == 1:  # networkAddress: family 1 (IPv4) + 4 bytes
            return str(ipaddress.IPv4Address(raw[1:]))
    return safe(value)


def _remote_port(port_id: Value, subtype: Value, descr: Value) -> str:
    """The neighbour's port: its id when that is a name, its description when the id is only a MAC."""
    if isinstance(subtype, int) and subtype not in _TEXT_SUBTYPES["port"] and descr:
        return safe(descr)
    return _id_text(port_id, subtype, "port")


def _local_ports(local: Columns, ifnames: Columns) -> dict[str, str]:
    """Local port number -> a name: lldpLocPortId (else its description), else ifName/ifDescr of the same number."""
    names: dict[str, str] = {}
    for column in (LLDP_LOCAL["port_id"], LLDP_LOCAL["port_descr"], IF_NAME["if_name"], IF_NAME["if_descr"]):
        for index, value in (local.get(column) or ifnames.get(column) or {}).items():
            if value and index not in names:
                names[index] = safe(value)
    return names


def _man_addresses(man: Mapping[str, Value]) -> dict[str, str]:
    """Row (timeMark.localPortNum.remIndex) -> its first IP in lldpRemManAddrTable (standard index or RouterOS column)."""
    found: dict[str, str] = {}
    for key, value in man.items():
        parts = key.split(".")
        if len(parts) < 4:
            continue
        column, row = parts[0], ".".join(parts[1:4])
        address = ""
        rest = [int(p) for p in parts[4:] if p.isdigit()]
        if len(rest) >= 6 and rest[0] == 1 and rest[1] == 4:  # subtype ipv4, length 4, the address
            address = ".".join(str(b) for b in rest[2:6])
        elif len(rest) >= 18 and rest[0] == 2 and rest[1] == 16:
            address = str(ipaddress.IPv6Address(bytes(b & 0xFF for b in rest[2:18])))
        elif column == "2" and isinstance(value, str):  # RouterOS: the address as a column, indexed by the row only
            address = _address(value)
        if address:
            found.setdefault(row, address)
    return found


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""


def parse_lldp(rem: Columns, man: Mapping[str, Value], local: Columns, ifnames: Columns) -> list[Neighbour]:
    """Neighbours from lldpRemTable (index timeMark.localPortNum.remIndex) and lldpRemManAddrTable."""
    ports = _local_ports(local, ifnames)
    addresses = _man_addresses(man)
    out: list[Neighbour] = []
    col = {k: rem.get(oid) or {} for k, oid in LLDP.items()}
    rows = sorted(set(col["sys_name"]) | set(col["chassis"]) | set(col["port_id"]), key=_index_key)
    for row in rows:
        parts = row.split(".")
        # timeMark.localPortNum.remIndex; some agents (older RouterOS) index by remIndex alone: the port is unknown.
        port = (ports.get(parts[-2]) or f"port {parts[-2]}") if len(parts) >= 3 else "port not given"
        out.append(
            Neighbour(
                protocol="lldp",
                local_port=port,
                remote_name=safe(col["sys_name"].get(row)),
                remote_port=_remote_port(col["port_id"].get(row), col["port_subtype"].get(row), col["port_descr"].get(row)),
                remote_address=addresses.get(row, ""),
                remote_chassis=_id_text(col["chassis"].get(row), col["chassis_subtype"].get(row), "chassis"),
                remote_descr=safe(col["sys_descr"].get(row), 256),
            )
        )
    return out


def parse_cdp(cache: Columns, ifnames: Columns) -> list[Neighbour]:
    """Neighbours from cdpCacheTable (index ifIndex.deviceIndex); cdpCacheAddress is 4 bytes for IPv4."""
    col = {k: cache.get(oid) or {} for k, oid in CDP.items()}
    names = _local_ports({}, ifnames)
    out = []
    for row in sorted(set(col["device_id"]) | set(col["address"]), key=_index_key):
        if_index = row.split(".")[0]
        raw = col["address"].get(row)
        address = ""
        if isinstance(raw, str):
            octets = raw.split(":")
            if len(octets) == 4:
                address = ".".join(str(int(o, 16)) for o in octets)
        out.append(
            Neighbour(
                protocol="cdp",
                local_port=names.get(if_index) or f"ifIndex {if_index}",
                remote_name=safe(col["device_id"].get(row)),
                remote_port=safe(col["port"].get(row)),
                remote_address=address,
                remote_descr=safe(col["platform"].get(row), 256),
            )
        )
    return out


def parse_fdb(fdb: Columns, port_ifindex: Mapping[str, Value], ifnames: Columns, limit: int = FDB_MAX) -> list[Neighbour]:
    """MAC addresses learned per port (dot1qTpFdbPort index fdbId.MAC, dot1dTpFdbPort index MAC), bridge port -> ifIndex."""
    names = _local_ports({}, ifnames)
    seen: dict[tuple[str, str], Neighbour] = {}
    for key, index_len in (("dot1q_port", 7), ("dot1d_port", 6)):
        for index, port in (fdb.get(FDB[key]) or {}).items():
            parts = index.split(".")
            if len(parts) != index_len or not isinstance(port, int) or port <= 0:
                continue
            mac = ":".join(f"{int(p) & 0xFF:02x}" for p in parts[-6:])
            if_index = port_ifindex.get(str(port))
            local = names.get(str(if_index)) if if_index is not None else None
            label = local or f"bridge port {port}"
            if (label, mac) not in seen and len(seen) < limit:
                seen[(label, mac)] = Neighbour(protocol="fdb", local_port=label, remote_chassis=mac)
    return list(seen.values())


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(p) for p in index.split(".") if p.isdigit())


async def read_neighbours(client: SnmpClient, target: Target, fdb: bool = True) -> list[Neighbour]:
    """Walk LLDP, CDP (and the forwarding table) on one device; tables the agent lacks just give no rows.

    Raises CollectError when the agent does not answer at all (the caller keeps what it read before).
    """
    async def walk(oids: list[str], binary: frozenset[str] = frozenset()) -> Columns:
        try:
            return await client.walk_columns(target, oids, max_rows=FDB_MAX * 2, binary=binary)
        except CollectError:
            return {}

    # One GETNEXT says which tables the agent has; only those are walked (most devices have one or none).
    # An agent that does not answer it raises CollectError: silence is not "no neighbours".
    probes = [LLDP["sys_name"], LLDP["chassis"], CDP["device_id"], *(FDB.values() if fdb else ())]
    has = {oid for oid, hit in (await client.get_next(target, probes)).items() if hit is not None}
    if not has:
        return []
    names = await walk(list(IF_NAME.values()))
    out: list[Neighbour] = []
    if has & {LLDP["sys_name"], LLDP["chassis"]}:
        rem = await walk(list(LLDP.values()), BINARY)
        man = (await walk([_LLDP_MAN])).get(_LLDP_MAN) or {}
        out += parse_lldp(rem, man, await walk(list(LLDP_LOCAL.values())), names)
    if CDP["device_id"] in has:
        out += parse_cdp(await walk(list(CDP.values()), BINARY), names)
    if has & set(FDB.values()):
        ports = (await walk([BRIDGE_PORT_IFINDEX])).get(BRIDGE_PORT_IFINDEX) or {}
        out += parse_fdb(await walk(list(FDB.values())), ports, names)
    return out
