"""Simulated appliances: UPSes (UPS-MIB, RFC 1628) and printers (Printer-MIB and hrPrinter)."""

from __future__ import annotations

from dataclasses import dataclass

from server.demo.snmprec import COUNTER32, DOWN, GAUGE32, INTEGER, TICKS, IfType, Port, Recording, interfaces, rng, system

UPS = "1.3.6.1.2.1.33.1"
_ON_BATTERY_ALARM = f"{UPS}.6.3.2"
HR_DEVICE = "1.3.6.1.2.1.25.3.2.1"
HR_PRINTER = "1.3.6.1.2.1.25.3.5.1"
PRT = "1.3.6.1.2.1.43"
SUPPLIES = f"{PRT}.11.1.1"
_PRINTER_TYPE = "1.3.6.1.2.1.25.3.1.5"
_TONER, _OPC, _WASTE = 3, 9, 4
_CONSUMED, _FILLED = 3, 4
_PERCENT = 19
_LOW_TONER = bytes([0x20])  # hrPrinterDetectedErrorState bit 2 (lowToner)


@dataclass(frozen=True)
class Supply:
    """One prtMarkerSuppliesEntry: a toner, drum or waste bin and how full it is (percent)."""

    descr: str
    kind: int
    level: int
    colorant: int = 1


def ups(rec: Recording, name: str, *, location: str, vendor: str, model: str, object_id: str,
        on_battery: bool, charge: int, load: int, runtime_min: int, va_rating: int) -> None:
    """A UPS network card: UPS-MIB identity, battery, input, output and alarm groups."""
    seed = rng(name)
    uptime = system(rec, name=name, descr=f"{vendor} {model} Network Management Card", object_id=object_id,
                    services=72, location=location, uptime_days=seed.uniform(30, 500))
    interfaces(rec, name, [Port(1, "eth0", "eth0", 100, rate_in=600, rate_out=900)], uptime)
    rec.text(f"{UPS}.1.1.0", vendor)
    rec.text(f"{UPS}.1.2.0", model)
    rec.text(f"{UPS}.1.3.0", "UPS 15.3 (ID18)")
    rec.text(f"{UPS}.1.4.0", "v6.9.6")
    rec.text(f"{UPS}.1.5.0", name)
    rec.text(f"{UPS}.1.6.0", "rack A3" if "hq" in location.lower() else "comms cupboard")
    battery = f"{UPS}.2"
    rec.number(f"{battery}.1.0", INTEGER, 2)  # batteryNormal: 40% is not yet "low"
    if on_battery:
        # Seconds on battery grows from 7 minutes; the estimate shrinks no further (no depletion in a demo).
        rec.counter(f"{battery}.2.0", INTEGER, 1, 420)
    else:
        rec.number(f"{battery}.2.0", INTEGER, 0)
    rec.number(f"{battery}.3.0", INTEGER, runtime_min)
    rec.number(f"{battery}.4.0", INTEGER, charge)
    rec.number(f"{battery}.5.0", INTEGER, 520 if on_battery else 546)
    rec.number(f"{battery}.6.0", INTEGER, 180 if on_battery else 0)
    rec.wave(f"{battery}.7.0", INTEGER, 27, 1, period=1800)
    inputs = f"{UPS}.3"
    rec.number(f"{inputs}.1.0", COUNTER32, 7 if on_battery else 3)
    rec.number(f"{inputs}.2.0", INTEGER, 1)
    rec.number(f"{inputs}.3.1.1.1", INTEGER, 1)
    rec.number(f"{inputs}.3.1.2.1", INTEGER, 0 if on_battery else 500)
    if on_battery:
        rec.number(f"{inputs}.3.1.3.1", INTEGER, 0)
    else:
        rec.wave(f"{inputs}.3.1.3.1", INTEGER, 231, 3, period=200)
    output = f"{UPS}.4"
    rec.number(f"{output}.1.0", INTEGER, 5 if on_battery else 3)  # battery(5) / normal(3)
    rec.number(f"{output}.2.0", INTEGER, 500)
    rec.number(f"{output}.3.0", INTEGER, 1)
    rec.number(f"{output}.4.1.1.1", INTEGER, 1)
    rec.number(f"{output}.4.1.2.1", INTEGER, 230)
    rec.wave(f"{output}.4.1.3.1", INTEGER, va_rating * 0.9 * load / 100 / 23, 2, period=240)
    rec.wave(f"{output}.4.1.4.1", INTEGER, va_rating * 0.9 * load / 100, 40, period=240)
    rec.wave(f"{output}.4.1.5.1", INTEGER, load, 3, period=240, high=100)
    alarms = f"{UPS}.6"
    rec.number(f"{alarms}.1.0", GAUGE32, 1 if on_battery else 0)
    if on_battery:
        rec.number(f"{alarms}.2.1.1.1", INTEGER, 1)
        rec.oid(f"{alarms}.2.1.2.1", _ON_BATTERY_ALARM)
        rec.number(f"{alarms}.2.1.3.1", TICKS, max(uptime - 42_000, 0))
    config = f"{UPS}.9"
    for column, value in ((1, 230), (2, 500), (3, 230), (4, 500), (5, va_rating), (6, va_rating * 9 // 10)):
        rec.number(f"{config}.{column}.0", INTEGER, value)


def printer(rec: Recording, name: str, *, location: str, model: str, supplies: list[Supply],
            pages: int, printing: bool) -> None:
    """An HP network printer: hrDevice + hrPrinter status, Printer-MIB supplies, page counter and alerts."""
    seed = rng(name)
    uptime = system(rec, name=name, object_id="1.3.6.1.4.1.11.2.3.9.1", services=72, location=location,
                    uptime_days=seed.uniform(1, 20),
                    descr="HP ETHERNET MULTI-ENVIRONMENT,ROM none,JETDIRECT,JD153,EEPROM JSI24090012,"
                          "CIDATE 05/22/2023")
    interfaces(rec, name, [Port(1, "NIC", "HP ETHERNET MULTI-ENVIRONMENT", 100, rate_in=400, rate_out=300),
                           Port(2, "lo0", "lo0", 0, kind=IfType.LOOPBACK, oper=DOWN)], uptime)
    low = [supply for supply in supplies if supply.kind == _TONER and supply.level <= 10]
    rec.number(f"{HR_DEVICE}.1.1", INTEGER, 1)
    rec.oid(f"{HR_DEVICE}.2.1", _PRINTER_TYPE)
    rec.text(f"{HR_DEVICE}.3.1", model)
    rec.oid(f"{HR_DEVICE}.4.1", "0.0")
    rec.number(f"{HR_DEVICE}.5.1", INTEGER, 3 if low else 2)  # warning(3) / running(2)
    rec.number(f"{HR_DEVICE}.6.1", COUNTER32, 0)
    rec.number(f"{HR_PRINTER}.1.1", INTEGER, 4 if printing else 3)  # printing(4) / idle(3)
    rec.octets(f"{HR_PRINTER}.2.1", _LOW_TONER if low else b"\x00")
    rec.text(f"{PRT}.5.1.1.16.1", name)
    rec.counter(f"{PRT}.10.2.1.4.1.1", COUNTER32, 0.02 if printing else 0.002, pages)
    for i, supply in enumerate(supplies, start=1):
        index = f"1.{i}"
        rec.number(f"{SUPPLIES}.2.{index}", INTEGER, 1)
        rec.number(f"{SUPPLIES}.3.{index}", INTEGER, supply.colorant if supply.kind == _TONER else 0)
        rec.number(f"{SUPPLIES}.4.{index}", INTEGER, _FILLED if supply.kind == _WASTE else _CONSUMED)
        rec.number(f"{SUPPLIES}.5.{index}", INTEGER, supply.kind)
        rec.text(f"{SUPPLIES}.6.{index}", supply.descr)
        rec.number(f"{SUPPLIES}.7.{index}", INTEGER, _PERCENT)
        rec.number(f"{SUPPLIES}.8.{index}", INTEGER, 100)
        rec.number(f"{SUPPLIES}.9.{index}", INTEGER, supply.level)
    for i, supply in enumerate(low, start=1):
        alert = f"{PRT}.18.1.1"
        rec.number(f"{alert}.2.1.{i}", INTEGER, 4)  # warningUnaryChangeEvent
        rec.number(f"{alert}.3.1.{i}", INTEGER, 0)
        rec.number(f"{alert}.4.1.{i}", INTEGER, 11)  # markerSupplies group
        rec.number(f"{alert}.5.1.{i}", INTEGER, 1)
        rec.number(f"{alert}.6.1.{i}", INTEGER, 0)
        rec.number(f"{alert}.7.1.{i}", INTEGER, 1104)  # markerTonerAlmostEmpty
        rec.text(f"{alert}.8.1.{i}", f"{supply.descr} very low")
        rec.number(f"{alert}.9.1.{i}", TICKS, max(uptime - 360_000, 0))


def toner(descr: str, level: int, colorant: int = 1) -> Supply:
    """A toner cartridge."""
    return Supply(descr, _TONER, level, colorant)


def drum(descr: str, level: int) -> Supply:
    """An imaging drum (OPC)."""
    return Supply(descr, _OPC, level)


def waste(descr: str, level: int) -> Supply:
    """A waste toner bin (filled, not consumed)."""
    return Supply(descr, _WASTE, level)
