"""Simulated switches and routers: IF-MIB with busy, idle, down and erroring ports, plus vendor CPU/memory."""

from __future__ import annotations

import random
from dataclasses import dataclass

from server.demo.snmprec import DOWN, GAUGE32, INTEGER, IfType, Port, Recording, interfaces, rng, system

_CISCO_TAIL = (
    "\r\nTechnical Support: http://www.cisco.com/techsupport\r\n"
    "Copyright (c) 1986-2023 by Cisco Systems, Inc.\r\nCompiled Thu 02-Mar-23 05:51 by mcpre"
)
_CPU = "1.3.6.1.4.1.9.9.109.1.1.1.1"  # CISCO-PROCESS-MIB cpmCPUTotalEntry
_MEMPOOL = "1.3.6.1.4.1.9.9.48.1.1.1"  # CISCO-MEMORY-POOL-MIB ciscoMemoryPoolEntry
_IP_FORWARDING = "1.3.6.1.2.1.4.1.0"


@dataclass(frozen=True)
class SwitchModel:
    """What differs between switch vendors: identity and how ports are named."""

    descr: str
    object_id: str
    ports: int
    cisco: bool

    def names(self, n: int) -> tuple[str, str]:
        """(ifName, ifDescr) of front port n."""
        if self.cisco:
            return f"Gi1/0/{n}", f"GigabitEthernet1/0/{n}"
        return str(n), str(n)


C9300_48 = SwitchModel(
    "Cisco IOS Software [Cupertino], Catalyst L3 Switch Software (CAT9K_IOSXE), Version 17.9.4a, "
    "RELEASE SOFTWARE (fc3)" + _CISCO_TAIL,
    "1.3.6.1.4.1.9.1.2494", 48, cisco=True,
)
C2960X_48 = SwitchModel(
    "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E8, RELEASE SOFTWARE (fc1)"
    + _CISCO_TAIL,
    "1.3.6.1.4.1.9.1.1208", 48, cisco=True,
)
C2960X_24 = SwitchModel(
    "Cisco IOS Software, C2960X Software (C2960X-UNIVERSALK9-M), Version 15.2(7)E8, RELEASE SOFTWARE (fc1)"
    + _CISCO_TAIL,
    "1.3.6.1.4.1.9.1.1257", 24, cisco=True,
)
ARUBA_2530_24 = SwitchModel(
    "HP J9776A 2530-24G Switch, revision YA.16.11.0012, ROM YA.15.20 (/ws/swbuildm/rel_ukiah_qaoff/code/"
    "build/lakes(swbuildm_rel_ukiah_qaoff_rel_ukiah))",
    "1.3.6.1.4.1.11.2.3.7.11.154", 24, cisco=False,
)

_DESKS = ("desk {floor}-{n:02d}", "phone {floor}-{n:02d}", "AP-{floor}-{n:02d}", "desk {floor}-{n:02d}", "")


def _edge_port(seed: random.Random, model: SwitchModel, n: int, floor: str) -> Port:
    """A front port with a desk, phone or AP behind it, or nothing (down), or shut (admin down)."""
    name, descr = model.names(n)
    roll = seed.random()
    alias = seed.choice(_DESKS).format(floor=floor, n=n)
    if roll < 0.12:
        return Port(n, name, descr, 1000, alias="unused", admin=DOWN, oper=DOWN)
    if roll < 0.35:
        return Port(n, name, descr, 1000, alias=alias, oper=DOWN)
    if alias.startswith("AP-"):
        return Port(n, name, descr, 1000, alias=alias, rate_in=seed.uniform(2e5, 3e6),
                    rate_out=seed.uniform(5e5, 6e6))
    busy = seed.random() < 0.15
    scale = 1e6 if busy else 4e4
    errors = seed.uniform(0.3, 3.0) if seed.random() < 0.06 else 0.0
    return Port(n, name, descr, 100 if alias.startswith("phone") else 1000, alias=alias,
                rate_in=seed.uniform(0.05, 1) * scale, rate_out=seed.uniform(0.05, 2) * scale, errors=errors)


def _cisco_health(rec: Recording, seed: random.Random, cpu: float, memory_mb: int) -> None:
    """CISCO-PROCESS-MIB CPU (5 s, 1 min, 5 min) and CISCO-MEMORY-POOL-MIB processor pool."""
    rec.number(f"{_CPU}.2.1", INTEGER, 1000)
    for column, amp, period in ((6, 12.0, 70.0), (7, 6.0, 300.0), (8, 3.0, 900.0)):
        rec.wave(f"{_CPU}.{column}.1", GAUGE32, cpu, amp, period=period, phase=seed.uniform(0, 6), high=100)
    rec.text(f"{_MEMPOOL}.2.1", "Processor")
    total = memory_mb * 1024 * 1024
    used = total * seed.uniform(0.35, 0.6)
    rec.wave(f"{_MEMPOOL}.5.1", GAUGE32, used, total * 0.02, period=1200)
    rec.wave(f"{_MEMPOOL}.6.1", GAUGE32, total - used, total * 0.02, period=1200, phase=3.14159)


def switch(rec: Recording, name: str, *, model: SwitchModel, location: str, floor: str,
           uplink: str, flap_port: int = 0, flap_period: float = 90.0) -> None:
    """An access switch: N front ports, the last two uplinked (LACP pair) to `uplink`."""
    seed = rng(name)
    uptime = system(rec, name=name, descr=model.descr, object_id=model.object_id, services=2,
                    location=location, uptime_days=seed.uniform(20, 400))
    ports = [_edge_port(seed, model, n, floor) for n in range(1, model.ports - 1)]
    for n in (model.ports - 1, model.ports):
        ifname, descr = model.names(n)
        ports.append(Port(n, ifname, descr, 1000, alias=f"uplink {uplink}", rate_in=seed.uniform(3e6, 2e7),
                          rate_out=seed.uniform(1e6, 8e6)))
    if flap_port:
        ifname, descr = model.names(flap_port)
        alias = f"desk {floor}-{flap_port} (bad cable)"
        ports[flap_port - 1] = Port(flap_port, ifname, descr, 1000, alias=alias, flap_period=flap_period)
    interfaces(rec, name, ports, uptime)
    if model.cisco:
        _cisco_health(rec, seed, seed.uniform(8, 25), 512)


def core_switch(rec: Recording, name: str, *, location: str, links: dict[int, tuple[str, float]],
                uplink: str) -> None:
    """A 48-port L3 core switch with 10G uplinks, an access-switch trunk per link, and VLAN interfaces."""
    seed = rng(name)
    model = C9300_48
    uptime = system(rec, name=name, descr=model.descr, object_id=model.object_id, services=6,
                    location=location, uptime_days=seed.uniform(100, 300))
    ports: list[Port] = []
    for n in range(1, 49):
        ifname, descr = model.names(n)
        if n in links:
            alias, rate = links[n]
            ports.append(Port(n, ifname, descr, 1000, alias=alias, rate_in=rate,
                              rate_out=rate * seed.uniform(0.3, 3)))
        elif n > 40:
            ports.append(Port(n, ifname, descr, 1000, alias="spare", admin=DOWN, oper=DOWN))
        else:
            ports.append(Port(n, ifname, descr, 1000, oper=DOWN))
    trunks = (f"uplink {uplink}", "trunk access-sw1", "trunk access-sw2", "trunk access-sw3")
    for n, alias in enumerate(trunks, start=1):
        rate = seed.uniform(2.5e7, 6e7) if n == 1 else seed.uniform(4e6, 2.5e7)
        ports.append(Port(48 + n, f"Te1/1/{n}", f"TenGigabitEthernet1/1/{n}", 10_000, alias=alias,
                          rate_in=rate, rate_out=rate * seed.uniform(0.4, 1.5)))
    ports.append(Port(53, "Po1", "Port-channel1", 2000, alias="lacp access-sw4", kind=IfType.LAG,
                      rate_in=seed.uniform(2e6, 1e7), rate_out=seed.uniform(2e6, 1e7)))
    for n, (vlan, alias) in enumerate(((1, ""), (10, "users"), (20, "servers"), (99, "mgmt")), start=54):
        ports.append(Port(n, f"Vl{vlan}", f"Vlan{vlan}", 1000, alias=alias, kind=IfType.PROP_VIRTUAL,
                          oper=DOWN if vlan == 1 else 1, rate_in=seed.uniform(1e4, 1e6) if vlan > 1 else 0,
                          rate_out=seed.uniform(1e4, 1e6) if vlan > 1 else 0))
    interfaces(rec, name, ports, uptime)
    _cisco_health(rec, seed, 14.0, 2048)
    rec.number(_IP_FORWARDING, INTEGER, 1)


def cisco_router(rec: Recording, name: str, *, location: str, wan: str, lan: str, vpn_peer: str) -> None:
    """An ISR 4331 edge router: busy WAN link, LAN to the core, a spare port and a VPN tunnel."""
    seed = rng(name)
    uptime = system(
        rec, name=name, object_id="1.3.6.1.4.1.9.1.1861", services=6, location=location, uptime_days=187.3,
        descr="Cisco IOS Software [Amsterdam], ISR Software (X86_64_LINUX_IOSD-UNIVERSALK9-M), "
              "Version 17.3.8a, RELEASE SOFTWARE (fc2)" + _CISCO_TAIL,
    )
    wan_rate = seed.uniform(2e6, 8e6)
    ports = [
        Port(1, "Gi0/0/0", "GigabitEthernet0/0/0", 1000, alias=wan, rate_in=wan_rate, rate_out=wan_rate / 3,
             errors=0.4),
        Port(2, "Gi0/0/1", "GigabitEthernet0/0/1", 1000, alias=lan, rate_in=wan_rate / 3, rate_out=wan_rate),
        Port(3, "Gi0/0/2", "GigabitEthernet0/0/2", 1000, alias="spare", admin=DOWN, oper=DOWN),
        Port(4, "Gi0", "GigabitEthernet0", 1000, alias="oob mgmt", oper=DOWN),
        Port(5, "Nu0", "Null0", 10_000, kind=1, mtu=1500),
        Port(6, "Lo0", "Loopback0", 8000, kind=IfType.LOOPBACK, mtu=1514),
        Port(7, "Tu1", "Tunnel1", 0, alias=f"vpn {vpn_peer}", kind=IfType.TUNNEL, mtu=1400,
             rate_in=seed.uniform(1e5, 6e5), rate_out=seed.uniform(1e5, 6e5)),
    ]
    interfaces(rec, name, ports, uptime)
    _cisco_health(rec, seed, 22.0, 4096)
    rec.number(_IP_FORWARDING, INTEGER, 1)


def mikrotik_router(rec: Recording, name: str, *, location: str, wan: str, vpn_peer: str) -> None:
    """A MikroTik RB4011 branch router: WAN, a LAN bridge, unused ether ports and a WireGuard tunnel."""
    seed = rng(name)
    uptime = system(rec, name=name, descr="RouterOS RB4011iGS+", object_id="1.3.6.1.4.1.14988.1", services=78,
                    location=location, uptime_days=41.7, contact="branch-it@example.net")
    wan_rate = seed.uniform(5e5, 3e6)
    ports = [Port(1, "ether1", "ether1", 1000, alias=wan, rate_in=wan_rate, rate_out=wan_rate / 4)]
    ports.append(Port(2, "ether2", "ether2", 1000, alias="lan", rate_in=wan_rate / 4, rate_out=wan_rate))
    ports += [Port(n, f"ether{n}", f"ether{n}", 1000, oper=DOWN) for n in range(3, 11)]
    ports.append(Port(11, "sfp-sfpplus1", "sfp-sfpplus1", 10_000, oper=DOWN))
    ports.append(Port(12, "bridge", "bridge", 0, kind=IfType.PROP_VIRTUAL, rate_in=wan_rate / 4, rate_out=wan_rate))
    ports.append(Port(13, "wg-hq", "wg-hq", 0, alias=f"vpn {vpn_peer}", kind=IfType.TUNNEL, mtu=1420,
                      rate_in=seed.uniform(5e4, 3e5), rate_out=seed.uniform(5e4, 3e5)))
    interfaces(rec, name, ports, uptime)
    rec.number(_IP_FORWARDING, INTEGER, 1)
