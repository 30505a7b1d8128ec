"""The importers by the name the CLI and the admin page give them."""

from __future__ import annotations

from collections.abc import Callable

from server.imports import kuma, librenms
from server.imports.common import Imported

SOURCES: dict[str, tuple[str, Callable[[object], Imported]]] = {
    "uptime-kuma": ("Uptime Kuma backup", kuma.convert),
    "librenms": ("LibreNMS device list", librenms.convert),
}
