"""The demo inventory (simulated devices on loopback addresses) and the calls that bring it to life."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from server.config.settings import Settings
from server.demo.fleet import DEFAULT_FLAP_PERIOD, UNREACHABLE, fleet
from server.demo.recordings import write_recordings
from server.demo.sim import START_TIMEOUT, SimHandle, start_snmpsim

DEMO_DIR = "demo-sim"
DEFAULT_BASE = "127.0.77."
DEFAULT_PORT = 1161
INTERVAL = 30
# Host part of the device that never answers: well clear of the simulated ones.
UNREACHABLE_HOST = 250
# The demo's action catalog (the example's switch and router actions) and the devices that take SNMP SETs.
ACTIONS = Path(__file__).with_name("actions.yaml")
WRITABLE_TAGS = frozenset({"core", "access", "wan"})


def _address(base_address: str, host: int) -> str:
    """base_address + host, refusing anything that is not a loopback IPv4 address."""
    address = ipaddress.ip_address(f"{base_address}{host}")
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"demo devices must live on 127.0.0.0/8, not {address}")
    return str(address)


def _entry(name: str, address: str, port: int, tags: tuple[str, ...], parent: str | None) -> dict[str, Any]:
    snmp: dict[str, Any] = {"version": "2c", "port": port, "community": name}
    if WRITABLE_TAGS.intersection(tags):
        # snmpsim knows one community per recording, so reads and SETs share it (a real switch would not).
        snmp["write"] = {"community": name}
    return {"name": name, "address": address, "tags": list(tags), "parent": parent, "interval": INTERVAL, "snmp": snmp}


def demo_settings(settings: Settings) -> Settings:
    """The settings the demo serves with: the demo action catalog unless an actions_file is configured."""
    if settings.actions_file is not None:
        return settings
    return settings.model_copy(update={"actions_file": ACTIONS})


def demo_devices(base_address: str = DEFAULT_BASE, port: int = DEFAULT_PORT) -> list[dict[str, Any]]:
    """Inventory entries for every simulated device, plus one device where nothing answers."""
    devices = [
        _entry(device.name, _address(base_address, host), port, device.tags, device.parent)
        for host, device in enumerate(fleet(), start=1)
    ]
    devices.append(_entry(UNREACHABLE.name, _address(base_address, UNREACHABLE_HOST), port,
                          UNREACHABLE.tags, UNREACHABLE.parent))
    return devices


def demo_endpoints(base_address: str = DEFAULT_BASE, port: int = DEFAULT_PORT) -> list[tuple[str, int]]:
    """The UDP endpoints snmpsim must serve: every demo device except the unreachable one."""
    return [(device["address"], port) for device in demo_devices(base_address, port)
            if device["name"] != UNREACHABLE.name]


def recordings_dir(data_dir: Path) -> Path:
    """Where the demo recordings live under a pocketnoc data dir."""
    return data_dir / DEMO_DIR / "recordings"


def prepare_demo(data_dir: Path, base_address: str = DEFAULT_BASE, port: int = DEFAULT_PORT,
                 flap_period: float = DEFAULT_FLAP_PERIOD) -> tuple[list[dict[str, Any]], Path]:
    """(Re)write the recordings under data_dir/demo-sim; return (inventory entries, recordings dir)."""
    directory = recordings_dir(data_dir)
    write_recordings(directory, flap_period)
    return demo_devices(base_address, port), directory


def run_demo_agents(data_dir: Path, base_address: str = DEFAULT_BASE, port: int = DEFAULT_PORT,
                    timeout: float = START_TIMEOUT) -> SimHandle:
    """Start snmpsim for the demo devices (writing the recordings if prepare_demo has not)."""
    directory = recordings_dir(data_dir)
    if not any(directory.glob("*.snmprec")):
        prepare_demo(data_dir, base_address, port)
    return start_snmpsim(directory, demo_endpoints(base_address, port), data_dir / DEMO_DIR / "snmpsim.log",
                         timeout=timeout)
