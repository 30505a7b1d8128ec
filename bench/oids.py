"""The OIDs the SnmpCollector polls on a bench device once detection and tuning are done, from agents.profiles."""

from __future__ import annotations

from agents.profiles import INTERFACES, OCTETS32_FIELDS, SYSTEM, UCD

# A bench device answers system + IF-MIB (with HC counters) + UCD: profiles system, if, ucd.
SCALARS: dict[str, str] = {**SYSTEM.scalars, **UCD.scalars}
# After its first walk the collector drops the 32-bit octet columns (HC counters answered).
COLUMNS: dict[str, str] = {k: v for k, v in INTERFACES.columns.items() if k not in OCTETS32_FIELDS}
PROFILES = ("system", "if", "ucd")
# FIELD-NOTES' reference workload: 15 scalars and a 4-column walk (~111 var-binds).
REF_COLUMNS: dict[str, str] = {k: INTERFACES.columns[k] for k in ("descr", "oper_status", "hc_in_octets",
                                                                   "hc_out_octets")}
VARBIND_BUDGET = 60  # the collector's var-binds per GETBULK (agents.snmp_client.VARBIND_BUDGET)
