"""What the SnmpCollector asks a bench device each poll, so the bare baseline can ask exactly the same."""

from __future__ import annotations

from typing import Any

from agents import snmp_client
from agents.base import SnmpCredentials, Target
from agents.profiles import INTERFACES, OCTETS32_FIELDS, SYSTEM, UCD
from agents.snmp import SnmpCollector

# The collector's var-binds per GETBULK (60 if it stops exporting the constant).
VARBIND_BUDGET: int = int(getattr(snmp_client, "VARBIND_BUDGET", 60))

# A bench device answers system + IF-MIB (with HC counters) + UCD: profiles system, if, ucd.
SCALARS: dict[str, str] = {**SYSTEM.scalars, **UCD.scalars}
# Every interface column the if profile names, less the 32-bit octets the HC counters replace.
ALL_COLUMNS: dict[str, str] = {k: v for k, v in INTERFACES.columns.items() if k not in OCTETS32_FIELDS}
# FIELD-NOTES' reference workload: 15 scalars and a 4-column walk (~111 var-binds).
REF_COLUMNS: dict[str, str] = {k: INTERFACES.columns[k] for k in ("descr", "oper_status", "hc_in_octets",
                                                                   "hc_out_octets")}


def plan_of(collector: SnmpCollector) -> Any:
    """The collector's per-target plan (private, read only to mirror its requests), or None."""
    plans = getattr(collector, "_plans", {})
    return next(iter(plans.values()), None)


def steady_columns(plan: Any) -> dict[str, str]:
    """Columns walked on a steady-state poll: the plan's columns less those it serves from its cache."""
    static: frozenset[str] = getattr(plan, "static", frozenset())
    return {name: oid for name, oid in plan.columns.items() if name not in static}


async def collector_request(address: str, port: int) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Poll one device three times with the real collector and read back what it now asks each poll."""
    collector = SnmpCollector()
    target = Target(address, port, "probe", snmp=SnmpCredentials(community="public"))
    try:
        for _ in range(3):
            await collector.collect(target)
        plan = plan_of(collector)
    finally:
        await collector.close()
    if plan is None:
        return SCALARS, ALL_COLUMNS, {"source": "profiles (no plan found)"}
    columns = steady_columns(plan)
    info = {
        "source": "collector plan",
        "profiles": list(plan.profiles),
        "cached_columns": sorted(set(plan.columns) - set(columns)),
        "static_max_age_s": getattr(collector, "static_max_age", None),
    }
    return dict(plan.scalars), columns, info
