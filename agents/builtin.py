"""The built-in collectors, loaded through the same door (agents.plugins) as an installed plug-in."""

from __future__ import annotations

from agents import plugins

BUILTIN = ("agents.snmp", "agents.ssh", "agents.net", "agents.nagios")


def load() -> list[plugins.Loaded]:
    """Import the built-in collector modules and every `pocketnoc.collectors` plug-in (each registers itself)."""
    return plugins.load(plugins.COLLECTORS, BUILTIN)
