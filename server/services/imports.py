"""Import preview for the admin page: an uploaded export converted to the YAML the CLI would write, secrets masked."""

from __future__ import annotations

import copy
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

from server.auth.access import Principal
from server.imports.common import Imported, ImportError_, dump, load_json
from server.imports.sources import SOURCES
from server.runtime import Services
from server.services.errors import ServiceError
from server.store import accounts

SECRET_KEYS = ("community", "auth_key", "priv_key", "password", "key_passphrase")
HIDDEN = "<hidden: run pocketnoc import on the server for the real value>"


class Preview(NamedTuple):
    """What the page shows: the YAML (secrets replaced), counts and the lines of what was not mapped."""

    inventory: str
    channels: str
    summary: str
    lines: list[str]


def _without_password(url: str) -> str:
    """An HTTP check's URL with the password of its user info (https://user:pass@host/) hidden."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:hidden@{host}"))


def _masked(result: Imported) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    devices = copy.deepcopy(result.devices)
    for device in devices:
        snmp = device.get("snmp")
        if isinstance(snmp, dict):
            for key in SECRET_KEYS:
                if key in snmp:
                    snmp[key] = HIDDEN
        for check in device.get("checks") or []:
            if isinstance(check, dict) and isinstance(check.get("url"), str):
                check["url"] = _without_password(check["url"])
    channels = [{**c, "url": HIDDEN} for c in result.channels]
    return devices, channels


def preview(svc: Services, p: Principal, ip: str | None, source: str, data: bytes) -> Preview:
    """Convert an uploaded export (nothing is stored but an audit entry); ServiceError on bad input."""
    if source not in SOURCES:
        raise ServiceError("choose what the file is: an Uptime Kuma backup or a LibreNMS device list")
    what, convert = SOURCES[source]
    try:
        result = convert(load_json(data, what))
    except ImportError_ as exc:
        raise ServiceError(str(exc), 422) from None
    devices, channels = _masked(result)
    checks = sum(len(d.get("checks") or []) for d in result.devices)
    summary = f"{len(result.devices)} devices, {checks} checks, {len(result.channels)} channels"
    with svc.engine.begin() as conn:
        accounts.write_audit(conn, p.user, "import.preview", source, {"devices": len(result.devices),
                                                                       "channels": len(result.channels)}, ip)
    lines = [f"note: {n}" for n in result.notes] + [f"not imported: {s}" for s in result.skipped]
    return Preview(dump({"devices": devices}), dump({"channels": channels, "routes": result.routes}) if channels else "",
                   summary, lines)
