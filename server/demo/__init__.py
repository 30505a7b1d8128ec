"""The demo: simulated SNMP devices (snmpsim on loopback) and the inventory that points at them."""

from server.demo.inventory import DEFAULT_PORT, demo_devices, demo_endpoints, demo_settings, prepare_demo, run_demo_agents
from server.demo.sim import SimError, SimHandle, SimPortTaken, start_snmpsim

__all__ = [
    "DEFAULT_PORT",
    "SimError",
    "SimHandle",
    "SimPortTaken",
    "demo_devices",
    "demo_endpoints",
    "demo_settings",
    "prepare_demo",
    "run_demo_agents",
    "start_snmpsim",
]
