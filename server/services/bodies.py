"""Inputs of use cases that are not inventory models themselves; each refuses fields it does not know."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from server.config.inventory import NAME_RE
from server.notify.config import CHANNEL_NAME


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


class NewChannel(BaseModel):
    """A channel: an Apprise URL, an http(s) webhook, or smtp(s):// email."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=CHANNEL_NAME)
    url: str = Field(min_length=3, max_length=2000)
    user: str | None = Field(default=None, pattern=NAME_RE)
    enabled: bool = True
    allow_unsafe: bool = False
