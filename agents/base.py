"""The collector interface every protocol module implements, and the one registry of collectors."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

SampleKind = Literal["gauge", "counter32", "counter64"]


class CollectError(Exception):
    """The device answered, but not usably (bad data, an error status, a parse failure)."""


class Unreachable(CollectError):
    """The device did not answer at all (timeout, refused, no route)."""


@dataclass(frozen=True, slots=True)
class SnmpCredentials:
    """SNMP v1/v2c community or v3 USM user; keys are plain text only in memory."""

    version: Literal["1", "2c", "3"] = "2c"
    community: str = ""
    user: str = ""
    auth_protocol: str | None = None  # md5 sha sha224 sha256 sha384 sha512
    auth_key: str | None = None
    priv_protocol: str | None = None  # des aes128 aes192 aes256
    priv_key: str | None = None
    context: str = ""


@dataclass(frozen=True, slots=True)
class SshCredentials:
    """SSH login; host_keys are the pinned 'type base64' lines (never trust-on-use here)."""

    user: str
    password: str | None = None
    key_file: str | None = None
    key_data: str | None = None
    key_passphrase: str | None = None
    host_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to reach one device for one protocol."""

    address: str
    port: int
    name: str = ""
    snmp: SnmpCredentials | None = None
    ssh: SshCredentials | None = None
    timeout: float = 2.0
    retries: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Sample:
    """One measured value; counters are raw and turned into rates by the server."""

    metric: str
    value: float
    labels: dict[str, str] = field(default_factory=dict)
    kind: SampleKind = "gauge"
    ts: float = field(default_factory=time.time)


@dataclass(slots=True)
class Reading:
    """Everything one collect() call learned: samples, facts and per-object tables.

    facts: scalar facts such as sysName, sysDescr, uptime_seconds, sysObjectID.
    tables: named lists of rows, e.g. "interfaces" -> [{"index": 1, "name": "eth0", ...}],
            "storage" -> [...], "supplies" -> [...]. Values are JSON-serialisable.
    """

    samples: list[Sample] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)
    duration: float = 0.0
    problem: str | None = None  # the target answered, but the check fails (e.g. an HTTP status or body mismatch)


class Collector(Protocol):
    """Fetches one Reading for a target, or raises CollectError/Unreachable. Never decides state."""

    kind: str

    async def collect(self, target: Target, profile: str | None = None) -> Reading: ...

    async def close(self) -> None: ...


@runtime_checkable
class Borrower(Protocol):
    """A collector that works through another kind's collector (nagios via ssh: the SSH collector's logged-in
    connections). Whoever holds both (the poller) lends it that collector, so a host checked by both kinds is logged
    into once; the borrower never closes what it was lent. Unlent, it makes its own."""

    borrows: tuple[str, ...]

    def lend(self, kind: str, collector: Collector) -> None: ...


REGISTRY: dict[str, Callable[[], Collector]] = {}


def register(kind: str, factory: Callable[[], Collector]) -> None:
    """Add a collector factory under its check kind ("snmp", "ssh", "ping", "tcp", "http")."""
    REGISTRY[kind] = factory
