"""The built-in collectors, loaded through the same register() door an add-on would use."""

from __future__ import annotations

import importlib
import logging

BUILTIN = ("agents.snmp", "agents.ssh", "agents.net")
log = logging.getLogger("pocketnoc.agents")


def load() -> None:
    """Import every built-in collector module so each registers itself."""
    for name in BUILTIN:
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a missing optional dependency disables one protocol, not all
            log.error("collector module %s not loaded: %s", name, exc)
