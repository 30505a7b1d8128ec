"""SNMP get / bounded multi-column walk / set with typed values, on top of SnmpTransport."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from agents.base import CollectError, Target, Unreachable
from agents.snmp_transport import SnmpTransport
from agents.snmp_values import (
    EndOfMib,
    Value,
    encode_for_set,
    finish,
    finish_value,
    oid_str,
    parse_oid,
    value_size,
)

log = logging.getLogger(__name__)

MAX_ROWS: Final = 10_000
MAX_BYTES: Final = 4 * 1024 * 1024
MAX_WALK_SECONDS: Final = 60.0
# Var-binds asked per GETBULK (snmpsim answers at most 64 by default; most agents fit ~60 in 1500 bytes).
VARBIND_BUDGET: Final = 60
_NAME_CACHE_MAX: Final = 65_536

ERROR_STATUS: Final = [
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
]
_TOO_BIG, _NO_SUCH_NAME = 1, 2


def status_name(status: int) -> str:
    """Name an SNMP error-status code."""
    return ERROR_STATUS[status] if 0 <= status < len(ERROR_STATUS) else f"error {status}"


class WalkResult(dict[str, dict[str, Value]]):
    """Column OID -> {index suffix -> value}; `truncated` says why a walk stopped early, if it did."""

    truncated: str | None = None


@dataclass(slots=True)
class _Column:
    oid: str
    prefix: tuple[int, ...]
    binary: bool
    last: tuple[int, ...]  # where the next request continues
    rows: dict[str, Value] = field(default_factory=dict)
    done: bool = False


class SnmpClient:
    """Async SNMP operations for many targets over shared sockets; create and use inside one event loop."""

    def __init__(self, max_in_flight: int = 64) -> None:
        self._max_in_flight = max_in_flight
        self._transport: SnmpTransport | None = None
        self._tuples: dict[str, tuple[int, ...]] = {}

    def _io(self) -> SnmpTransport:
        loop = asyncio.get_running_loop()
        if self._transport is None or self._transport.loop is not loop:
            if self._transport is not None:
                self._transport.close_now()  # its loop is gone or different: sockets cannot move loops
            self._transport = SnmpTransport(self._max_in_flight)
        return self._transport

    def _tuple(self, oid: str) -> tuple[int, ...]:
        parsed = self._tuples.get(oid)
        if parsed is None:
            if len(self._tuples) >= _NAME_CACHE_MAX:
                self._tuples.clear()
            parsed = self._tuples[oid] = parse_oid(oid)
        return parsed

    async def get(self, target: Target, oids: Sequence[str], binary: Collection[str] = ()) -> dict[str, Value]:
        """GET scalars; absent ones (noSuchObject/noSuchInstance) map to None, never to a value."""
        result: dict[str, Value] = dict.fromkeys(oids)
        unique = list(dict.fromkeys(oids))
        budget = _budget(target)
        for start in range(0, len(unique), budget):
            await self._get_chunk(target, unique[start : start + budget], binary, result)
        return result

    async def _get_chunk(self, target: Target, pending: list[str], binary: Collection[str], result: dict[str, Value]) -> None:
        v1 = _version(target) == "1"
        while pending:
            status, index, answer = await self._io().exchange(target, "get", [self._tuple(o) for o in pending])
            if status == _NO_SUCH_NAME and v1 and 1 <= index <= len(pending):
                del pending[index - 1]  # SNMPv1 fails the whole PDU for one missing OID
                continue
            if status == _TOO_BIG and len(pending) > 1:  # a small agent: ask in halves
                half = len(pending) // 2
                await self._get_chunk(target, pending[:half], binary, result)
                await self._get_chunk(target, pending[half:], binary, result)
                return
            if status:
                bad = pending[index - 1] if 1 <= index <= len(pending) else "?"
                raise CollectError(f"{target.address}: GET {bad} failed: {status_name(status)}")
            for oid, (name, val) in zip(pending, answer, strict=False):
                if name == self._tuple(oid):
                    result[oid] = finish_value(val, oid in binary)
            return

    async def get_next(self, target: Target, oids: Sequence[str]) -> dict[str, tuple[str, Value] | None]:
        """GETNEXT each OID; None where the next object is outside the OID's subtree or the MIB ended."""
        result: dict[str, tuple[str, Value] | None] = dict.fromkeys(oids)
        pending = list(dict.fromkeys(oids))
        while pending:
            status, index, answer = await self._io().exchange(target, "next", [self._tuple(o) for o in pending])
            if status == _NO_SUCH_NAME and 1 <= index <= len(pending):
                del pending[index - 1]  # v1 end of MIB for that OID
                continue
            if status:
                raise CollectError(f"{target.address}: GETNEXT failed: {status_name(status)}")
            for oid, (name, val) in zip(pending, answer, strict=False):
                prefix = self._tuple(oid)
                value = finish(val)
                if name[: len(prefix)] == prefix and len(name) > len(prefix) and not isinstance(value, EndOfMib):
                    result[oid] = (oid_str(name), value)
            break
        return result

    async def walk_columns(
        self,
        target: Target,
        column_oids: Iterable[str],
        max_rows: int = MAX_ROWS,
        max_bytes: int = MAX_BYTES,
        binary: Collection[str] = (),
        max_seconds: float = MAX_WALK_SECONDS,
        expected_rows: int = 0,
    ) -> WalkResult:
        """Walk table columns together with GETBULK (GETNEXT on v1); bounded in rows, bytes and time.

        expected_rows (e.g. the row count of the last poll) sizes the last GETBULK so it asks for one
        row past the end instead of a full batch of other columns' data.
        """
        columns = [_Column(oid, self._tuple(oid), oid in binary, self._tuple(oid)) for oid in dict.fromkeys(column_oids)]
        result = WalkResult()
        v1 = _version(target) == "1"
        budget = _budget(target)
        used_bytes = 0
        started = time.monotonic()
        got_any = False
        while True:
            active = [c for c in columns if not c.done]
            if not active:
                break
            if time.monotonic() - started > max_seconds:
                result.truncated = "max_seconds"
                break
            repetitions = max(1, budget // len(active))
            if expected_rows:
                remaining = expected_rows - min(len(c.rows) for c in active)
                repetitions = max(1, min(repetitions, remaining + 1))
            names = [c.last for c in active]
            try:
                if v1:
                    status, index, answer = await self._io().exchange(target, "next", names)
                else:
                    status, index, answer = await self._io().exchange(target, "bulk", names, repetitions)
            except Unreachable:
                if not got_any:
                    raise
                result.truncated = "timeout"
                break
            got_any = True
            if status:
                if status == _TOO_BIG and budget > 1:
                    budget //= 2
                    continue
                if 1 <= index <= len(active) and status != _TOO_BIG:
                    active[index - 1].done = True  # this column ended (v1) or the agent refuses it
                    continue
                raise CollectError(f"{target.address}: walk failed: {status_name(status)}")
            if not answer:
                result.truncated = "empty response"
                break
            progressed = False
            width = len(active)
            for i, (got, val) in enumerate(answer):
                col = active[i % width]
                if col.done:
                    continue
                plen = len(col.prefix)
                if len(got) <= plen or got[:plen] != col.prefix:
                    col.done = progressed = True
                    continue
                value = finish(val, col.binary)
                if isinstance(value, EndOfMib):  # carries the requested OID, so check it before the order
                    col.done = progressed = True
                    continue
                if got <= col.last:
                    col.done = progressed = True
                    result.truncated = "OID not increasing"
                    continue
                progressed = True
                col.last = got
                if value is None:
                    continue
                col.rows[sys.intern(oid_str(got[plen:]))] = value  # row indexes repeat on every device
                used_bytes += value_size(value)
                if len(col.rows) >= max_rows:
                    col.done = True
                    result.truncated = "max_rows"
                if used_bytes > max_bytes:
                    result.truncated = "max_bytes"
                    break
            if result.truncated == "max_bytes":
                break
            if not progressed:
                result.truncated = "no progress"
                break
        for col in columns:
            result[col.oid] = col.rows
        if result.truncated:
            log.debug(
                "walk of %s at %s stopped early: %s",
                [c.oid for c in columns][:3],
                target.address,
                result.truncated,
            )
        return result

    async def set(self, target: Target, varbinds: Sequence[tuple[str, object]]) -> dict[str, Value]:
        """SET values (int -> INTEGER, str/bytes -> OCTET STRING); CollectError names the refusal."""
        names = [self._tuple(oid) for oid, _value in varbinds]
        encoded = [encode_for_set(value) for _oid, value in varbinds]
        status, index, answer = await self._io().exchange(target, "set", names, values=encoded)
        if status:
            bad = varbinds[index - 1][0] if 1 <= index <= len(varbinds) else "?"
            raise CollectError(f"{target.address}: SET {bad} refused: {status_name(status)}")
        result: dict[str, Value] = {}
        for (oid, _value), (_name, val) in zip(varbinds, answer, strict=False):
            result[oid] = finish_value(val)
        return result

    async def close(self) -> None:
        """Close sockets; the client can be used again afterwards (it reopens lazily)."""
        if self._transport is not None:
            transport, self._transport = self._transport, None
            await transport.close()


def _budget(target: Target) -> int:
    """Var-binds per request: VARBIND_BUDGET unless the target's options say snmp_varbinds."""
    try:
        return max(1, int(target.options.get("snmp_varbinds", VARBIND_BUDGET)))
    except (TypeError, ValueError):
        return VARBIND_BUDGET


def _version(target: Target) -> str:
    return target.snmp.version if target.snmp else "2c"
