"""The demo network: which simulated devices exist, how they are tagged and wired, and how each is built."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from server.demo.appliances import drum, printer, toner, ups, waste
from server.demo.hosts import linux_host, windows_host
from server.demo.netdev import (
    ARUBA_2530_24,
    C2960X_24,
    C2960X_48,
    cisco_router,
    core_switch,
    mikrotik_router,
    switch,
)
from server.demo.snmprec import Recording

# Ports the tests (and anyone exploring the demo) can rely on: (device, ifIndex).
BUSY_PORT = ("core-sw1", 49)
FLAP_PORT = ("access-sw2", 17)
DEFAULT_FLAP_PERIOD = 90.0

_DC = "HQ / server room, rack A3"
_BRANCH = "Branch office / comms cupboard"


@dataclass(frozen=True)
class DemoDevice:
    """One simulated device: inventory facts plus the function that writes its recording."""

    name: str
    tags: tuple[str, ...]
    parent: str | None
    build: Callable[[Recording, str], None]


def fleet(flap_period: float = DEFAULT_FLAP_PERIOD) -> tuple[DemoDevice, ...]:
    """Every simulated device, parents before children; the flapping port toggles every flap_period s."""
    hq, branch = "site-hq", "site-branch"
    core_links = {
        1: ("web-01", 1.2e7), 2: ("web-02", 9e6), 3: ("app-01", 4e6), 4: ("db-01", 2e7),
        5: ("build-01", 3e6), 6: ("dc-01", 8e5), 7: ("file-01", 6e6),
    }
    hq_switch = partial(switch, uplink="core-sw1")
    return (
        DemoDevice("edge-rtr1", (hq, "wan"), None, partial(
            cisco_router, location=_DC, wan="WAN isp-a circuit 4471-993", lan="core-sw1 Te1/1/1",
            vpn_peer="branch-rtr1")),
        DemoDevice("core-sw1", (hq, "core"), "edge-rtr1",
                   partial(core_switch, location=_DC, links=core_links, uplink="edge-rtr1")),
        DemoDevice("access-sw1", (hq, "access"), "core-sw1",
                   partial(hq_switch, model=C2960X_48, floor="1F", location="HQ / 1st floor closet")),
        DemoDevice("access-sw2", (hq, "access"), "core-sw1",
                   partial(hq_switch, model=C2960X_48, floor="2F", location="HQ / 2nd floor closet",
                           flap_port=FLAP_PORT[1], flap_period=flap_period)),
        DemoDevice("access-sw3", (hq, "access"), "core-sw1",
                   partial(hq_switch, model=C2960X_24, floor="3F", location="HQ / 3rd floor closet")),
        DemoDevice("access-sw4", (hq, "access"), "core-sw1",
                   partial(hq_switch, model=ARUBA_2530_24, floor="4F", location="HQ / 4th floor closet")),
        DemoDevice("branch-rtr1", (branch, "wan"), "edge-rtr1", partial(
            mikrotik_router, location=_BRANCH, wan="WAN isp-b fibre", vpn_peer="edge-rtr1")),
        DemoDevice("access-sw5", (branch, "access"), "branch-rtr1", partial(
            switch, model=ARUBA_2530_24, floor="BR", location=_BRANCH, uplink="branch-rtr1")),
        DemoDevice("access-sw6", (branch, "access"), "branch-rtr1", partial(
            switch, model=C2960X_24, floor="BR", location=_BRANCH, uplink="branch-rtr1")),
        DemoDevice("web-01", (hq, "servers", "linux"), "core-sw1", partial(
            linux_host, location=_DC, cores=4, ram_gb=8, load=0.25, nic_rate=1.2e7,
            disks=[("/", 40, 0.46), ("/var", 100, 0.61), ("/boot", 0.5, 0.22)])),
        DemoDevice("web-02", (hq, "servers", "linux"), "core-sw1", partial(
            linux_host, location=_DC, cores=4, ram_gb=8, load=0.2, nic_rate=9e6,
            disks=[("/", 40, 0.44), ("/var", 100, 0.58), ("/boot", 0.5, 0.22)])),
        DemoDevice("app-01", (hq, "servers", "linux"), "core-sw1", partial(
            linux_host, location=_DC, cores=8, ram_gb=32, load=0.45, nic_rate=4e6, docker=True,
            disks=[("/", 60, 0.52), ("/var", 200, 0.71)])),
        DemoDevice("db-01", (hq, "servers", "linux"), "core-sw1", partial(
            linux_host, location=_DC, cores=16, ram_gb=64, load=0.35, nic_rate=2e7,
            disks=[("/", 40, 0.38), ("/var", 500, 0.93), ("/boot", 0.5, 0.24)])),
        DemoDevice("build-01", (hq, "servers", "linux"), "core-sw1", partial(
            linux_host, location=_DC, cores=8, ram_gb=16, load=1.45, nic_rate=3e6,
            disks=[("/", 250, 0.67)])),
        DemoDevice("branch-srv1", (branch, "servers", "linux"), "access-sw5", partial(
            linux_host, location=_BRANCH, cores=2, ram_gb=4, load=0.1, nic_rate=3e5,
            disks=[("/", 120, 0.41)])),
        DemoDevice("dc-01", (hq, "servers", "windows"), "core-sw1", partial(
            windows_host, location=_DC, object_id="1.3.6.1.4.1.311.1.1.3.1.3", cores=4, ram_gb=16,
            load=0.12, nic_rate=8e5, disks=[("", 80, 0.48)])),
        DemoDevice("file-01", (hq, "servers", "windows"), "core-sw1", partial(
            windows_host, location=_DC, object_id="1.3.6.1.4.1.311.1.1.3.1.2", cores=8, ram_gb=32,
            load=0.3, nic_rate=6e6, disks=[("", 100, 0.55), ("Data", 2000, 0.78)])),
        DemoDevice("ups-01", (hq, "power"), "access-sw1", partial(
            ups, location=_DC, vendor="APC", model="Smart-UPS SRT 3000", object_id="1.3.6.1.4.1.318.1.3.27",
            on_battery=True, charge=40, load=55, runtime_min=18, va_rating=3000)),
        DemoDevice("ups-02", (branch, "power"), "access-sw5", partial(
            ups, location=_BRANCH, vendor="Eaton", model="5PX 1500", object_id="1.3.6.1.4.1.534.1",
            on_battery=False, charge=100, load=23, runtime_min=74, va_rating=1500)),
        DemoDevice("printer-2f", (hq, "print"), "access-sw2", partial(
            printer, location="HQ / 2nd floor print corner", model="HP LaserJet Pro M404dn", pages=48_213,
            printing=False,
            supplies=[toner("Black Cartridge HP CF259A", 5), drum("Imaging Drum HP CF232A", 62)])),
        DemoDevice("printer-3f", (hq, "print"), "access-sw3", partial(
            printer, location="HQ / 3rd floor print corner", model="HP Color LaserJet Pro M454dw",
            pages=23_870, printing=True, supplies=[
                toner("Black Cartridge HP W2030A", 71, 1), toner("Cyan Cartridge HP W2031A", 48, 2),
                toner("Magenta Cartridge HP W2033A", 33, 3), toner("Yellow Cartridge HP W2032A", 57, 4),
                waste("Toner Collection Unit HP 3WT90A", 18)])),
    )


def _no_recording(rec: Recording, name: str) -> None:
    """Nothing answers for this device, so it has no recording."""


# Listed in the inventory, but nothing answers at its address.
UNREACHABLE = DemoDevice("backup-nas1", ("site-hq", "servers"), "core-sw1", _no_recording)
