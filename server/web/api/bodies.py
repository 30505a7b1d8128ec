"""Request bodies that are not inventory models themselves; each refuses fields it does not know."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class DevicePatch(BaseModel):
    """Fields of a device to change (those of the inventory); `snmp` and `ssh` are merged into what is stored."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    address: str | None = None
    tags: list[str] | None = None
    parent: str | None = None
    interval: int | None = None
    kind: str | None = None
    snmp: dict[str, Any] | None = None
    ssh: dict[str, Any] | None = None
    checks: list[dict[str, Any]] | None = None
    ports: dict[str, str | None] | None = None
    enabled: bool | None = None
