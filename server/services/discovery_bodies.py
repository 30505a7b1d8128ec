"""What a discovery run is asked with (API body, page form, CLI file) and what approving takes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from server.config.inventory import SnmpSpec, SshSpec


class DiscoveryRequest(BaseModel):
    """Ranges and/or a seed, SNMP credentials to try in order (v3 first), optional SSH credentials, limits."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    ranges: list[str] = Field(default_factory=list, max_length=64)
    seed: str | None = Field(default=None, max_length=253)  # an address or a device's name
    snmp: list[SnmpSpec] = Field(min_length=1, max_length=10)
    ssh: SshSpec | None = None
    confirm_large: bool = False  # needed for a range wider than a /16
    sweep: bool = True  # probe every address of the ranges (else only the seed and its neighbours)
    ports: list[int] = Field(default_factory=lambda: [22, 443], max_length=8)
    icmp: bool = True
    fdb: bool = False
    rate: float = Field(default=300.0, ge=1, le=5000)  # probes per second
    timeout: float = Field(default=1.0, ge=0.1, le=10)
    every: int | None = Field(default=None, ge=15, le=10080)  # minutes between scheduled re-runs

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        if any(not 1 <= p <= 65535 for p in value):
            raise ValueError("ports are 1-65535")
        return sorted(set(value))

    @field_validator("snmp")
    @classmethod
    def _no_write(cls, value: list[SnmpSpec]) -> list[SnmpSpec]:
        if any(s.write is not None for s in value):
            raise ValueError("discovery reads only: leave out write credentials")
        return value


class ApproveRequest(BaseModel):
    """Which proposals become devices: `all`, or the proposal ids given."""

    model_config = ConfigDict(extra="forbid")

    ids: list[int] = Field(default_factory=list, max_length=10_000)
    all: bool = False
    tags: list[str] = Field(default_factory=list, max_length=8)


Change = Literal["new", "changed", "same", "gone"]
