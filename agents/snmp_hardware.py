"""Hardware facts (model, serial, firmware), read once when a device is detected: its family's OIDs, else ENTITY-MIB."""

from __future__ import annotations

from typing import Final

from agents.base import Target, Unreachable
from agents.snmp_client import SnmpClient
from agents.snmp_families import Family
from agents.snmp_partial import next_split

# ENTITY-MIB entPhysicalTable columns; GETNEXT on a column gives its first row, usually the chassis.
ENTITY: Final = {
    "model": "1.3.6.1.2.1.47.1.1.1.1.13",  # entPhysicalModelName
    "serial": "1.3.6.1.2.1.47.1.1.1.1.11",  # entPhysicalSerialNum
    "firmware": "1.3.6.1.2.1.47.1.1.1.1.10",  # entPhysicalSoftwareRev
}
MAX_TEXT: Final = 128


async def read_hardware(client: SnmpClient, target: Target, family: Family | None) -> dict[str, str]:
    """One GETNEXT for every candidate OID; facts hw_model, hw_serial, hw_firmware where a text answered."""
    wanted: dict[str, list[str]] = {k: [oid] for k, oid in ENTITY.items()}
    if family is not None:
        for key, oid in family.hardware.items():
            wanted[key].insert(0, oid)
    oids = [oid for options in wanted.values() for oid in options]
    try:
        found = await client.get_next(target, oids)
    except Unreachable:
        found = await next_split(client, target, oids)
    facts: dict[str, str] = {}
    for key, options in wanted.items():
        for oid in options:
            hit = found.get(oid)
            value = hit[1] if hit is not None else None
            if isinstance(value, str) and value.strip():
                facts[f"hw_{key}"] = value.strip()[:MAX_TEXT]
                break
    return facts
