"""Partial answers are not outages: when an agent stays silent on a big request, ask smaller ones.

Some agents drop a whole request when one OID in it breaks a sub-agent, or when the answer does not
fit one datagram (a 60 KB ifAlias). Silence on a request is then no proof the device is down: the
system group alone decides that, and what stays silent on its own is named in a warning.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Mapping
from typing import Final

from agents.base import Target, Unreachable
from agents.snmp_client import SnmpClient, WalkResult
from agents.snmp_values import Value

# A down device is only asked once more, briefly: its poll stays near one timeout, so it keeps its interval.
PROBE_SHARE: Final = 1 / 3
PROBE_MIN_SECONDS: Final = 0.5
# Var-binds per GETBULK when a column is walked on its own after silence, then the last resort.
SMALL_BUDGET: Final = 8
TINY_BUDGET: Final = 1


def with_budget(target: Target, budget: int) -> Target:
    """The same target, asking at most `budget` var-binds per request."""
    return dataclasses.replace(target, options={**target.options, "snmp_varbinds": budget})


async def get_split(
    client: SnmpClient, target: Target, oids: Mapping[str, str], vital: Collection[str]
) -> tuple[dict[str, Value], list[str]]:
    """GET after a silent big GET: the vital names together (silence there is Unreachable), the rest one by one.

    Returns the values by name and the names that stayed silent on their own.
    """
    first = {n: o for n, o in oids.items() if n in vital} or dict(list(oids.items())[:1])
    probe = dataclasses.replace(target, timeout=max(PROBE_MIN_SECONDS, target.timeout * PROBE_SHARE), retries=0)
    got = await client.get(probe, list(first.values()))  # Unreachable here is the true verdict (a small request, quickly)
    values: dict[str, Value] = {n: got.get(o) for n, o in first.items()}
    rest = [(n, o) for n, o in oids.items() if n not in first]
    answers = await asyncio.gather(*(client.get(target, [o]) for _n, o in rest), return_exceptions=True)
    silent: list[str] = []
    for (name, oid), answer in zip(rest, answers, strict=True):
        if isinstance(answer, Unreachable):
            silent.append(name)
            values[name] = None
        elif isinstance(answer, BaseException):
            raise answer
        else:
            values[name] = answer.get(oid)
    return values, silent


async def next_split(client: SnmpClient, target: Target, oids: list[str]) -> dict[str, tuple[str, Value] | None]:
    """GETNEXT each OID on its own (after silence on all of them together); silent ones count as absent."""
    answers = await asyncio.gather(*(client.get_next(target, [o]) for o in oids), return_exceptions=True)
    found: dict[str, tuple[str, Value] | None] = dict.fromkeys(oids)
    for oid, answer in zip(oids, answers, strict=True):
        if isinstance(answer, Unreachable):
            continue
        if isinstance(answer, BaseException):
            raise answer
        found[oid] = answer.get(oid)
    return found


async def walk_split(
    client: SnmpClient,
    target: Target,
    column_oids: list[str],
    max_rows: int,
    max_bytes: int,
    binary: Collection[str],
) -> tuple[WalkResult, list[str]]:
    """Walk each column alone with few repetitions, then one at a time; returns rows and the silent columns."""

    async def one(oid: str) -> tuple[dict[str, Value], bool]:
        rows: dict[str, Value] = {}
        for budget in (SMALL_BUDGET, TINY_BUDGET):
            try:
                walked = await client.walk_columns(with_budget(target, budget), [oid], max_rows, max_bytes, binary=binary)
            except Unreachable:
                continue
            rows = walked.get(oid, {})
            if walked.truncated != "timeout":
                return rows, True
        return rows, False  # silent at some row even one at a time: keep what came before it

    results = await asyncio.gather(*(one(oid) for oid in column_oids))
    walked = WalkResult()
    silent: list[str] = []
    for oid, (rows, complete) in zip(column_oids, results, strict=True):
        walked[oid] = rows
        if not complete:
            silent.append(oid)
    return walked, silent
