"""snmpsim variation module for the demo: counters that grow, gauges that wave, a port that flaps, writable objects."""

# snmpsim exec()s a copy of this file on its own (see sim.py), so it imports nothing from pocketnoc.
# A record `OID|TAG:demo|kind=counter,rate=1200,initial=5e9` is evaluated by variate() at request time.
# `kind=store,init=HEX[,choices=1:2:3]` is writable: a SET (of the record's type, one of `choices` if given)
# is kept in memory per recording and answered from then on, so the demo's SNMP actions really change it.
# `kind=oper,oper=1,index=N` is ifOperStatus that goes down(2) while ifAdminStatus.N is set down(2).

from __future__ import annotations

import math
import time
from typing import Any

BOOTED = time.time()
_TWO_PI = 2.0 * math.pi
_PARSED: dict[str, tuple[str, dict[str, float]]] = {}
_STATUS_UP = 1
_STATUS_DOWN = 2
_IF_ADMIN = "1.3.6.1.2.1.2.2.1.7."
# (recording file, OID) -> the value last SET (the pysnmp object, answered as it came).
STORED: dict[tuple[str, str], Any] = {}


def parse(value: str) -> tuple[str, dict[str, float]]:
    """Split a record value like `kind=counter,rate=3.5` into its kind and numeric parameters."""
    cached = _PARSED.get(value)
    if cached is not None:
        return cached
    kind = ""
    params: dict[str, float] = {}
    for item in value.split(","):
        key, _, raw = item.partition("=")
        if key == "kind":
            kind = raw
        elif key:
            params[key] = float(raw)
    _PARSED[value] = (kind, params)
    return kind, params


def counter(params: dict[str, float], elapsed: float) -> int:
    """A counter whose rate swings around `rate` by `amp` (0..1) with `period`; never goes backwards."""
    rate = params.get("rate", 1.0)
    amp = min(max(params.get("amp", 0.0), 0.0), 0.95)
    period = params.get("period", 600.0)
    phase = params.get("phase", 0.0)
    # The integral of rate * (1 + amp*sin(2πt/P + φ)), so the value is monotonic for amp < 1.
    swing = amp * period / _TWO_PI * (math.cos(phase) - math.cos(_TWO_PI * elapsed / period + phase))
    value = int(params.get("initial", 0.0) + rate * (elapsed + swing))
    return value % (1 << int(params.get("bits", 64)))


def wave(params: dict[str, float], elapsed: float) -> float:
    """A gauge moving around `base` by ±`amp` with `period`, kept within [min, max]."""
    period = params.get("period", 600.0)
    value = params.get("base", 0.0) + params.get("amp", 0.0) * math.sin(
        _TWO_PI * elapsed / period + params.get("phase", 0.0)
    )
    return min(max(value, params.get("min", -math.inf)), params.get("max", math.inf))


def flap_status(params: dict[str, float], elapsed: float) -> int:
    """ifOperStatus that starts up and toggles every `period` seconds."""
    return _STATUS_UP if int(elapsed // params.get("period", 90.0)) % 2 == 0 else _STATUS_DOWN


def flap_change(params: dict[str, float], elapsed: float) -> int:
    """ifLastChange (sysUpTime ticks) of the most recent flap_status toggle."""
    period = params.get("period", 90.0)
    last_toggle = (elapsed // period) * period
    return int(params.get("uptime", 0.0) + last_toggle * 100) % (1 << 32)


def evaluate(kind: str, params: dict[str, float], tag: str, elapsed: float) -> int | str:
    """The value of one record of this module at `elapsed` seconds after start."""
    if kind == "counter":
        return counter(params, elapsed)
    if kind == "wave":
        value = wave(params, elapsed)
        if tag.startswith("4"):
            return f"{value:.{int(params.get('decimals', 2))}f}"
        return round(value)
    if kind == "flap":
        return flap_status(params, elapsed)
    if kind == "flapchange":
        return flap_change(params, elapsed)
    raise ValueError(f"unknown demo variation kind {kind!r}")


def init(**context: Any) -> None:
    """Nothing to set up; snmpsim requires the hook."""


def store_settings(value: str) -> dict[str, str]:
    """The `key=value` pairs of a `kind=store` record (kept as text: `init` is hex)."""
    return dict(item.partition("=")[::2] for item in value.split(",") if item)


def _store(oid: Any, tag: str, value: str, context: dict[str, Any]) -> tuple[Any, str, Any]:
    """GET answers the last SET value (else the initial one); SET checks type and choices, then keeps it."""
    settings = store_settings(value)
    key = (str(context.get("dataFile", "")), str(oid))
    if context["setFlag"]:
        from pysnmp.proto import rfc1902  # snmpsim's own SNMP library: present wherever this module runs
        from pysnmp.smi import error

        new = context["origValue"]
        index = max(0, context.get("varsTotal", 1) - context.get("varsRemaining", 0) - 1)
        numeric = not tag.startswith("4")
        if numeric != isinstance(new, rfc1902.Integer) or (not numeric and not isinstance(new, rfc1902.OctetString)):
            raise error.WrongTypeError(name=oid, idx=index)
        choices = settings.get("choices")
        if choices and str(int(new)) not in choices.split(":"):
            raise error.WrongValueError(name=oid, idx=index)
        STORED[key] = new
        return oid, tag, new
    if key in STORED:
        return oid, tag, STORED[key]
    initial = bytes.fromhex(settings.get("init", "")).decode("utf-8")
    return oid, tag, initial if tag.startswith("4") else int(initial or 0)


def _oper(oid: Any, tag: str, params: dict[str, float], context: dict[str, Any]) -> int:
    """ifOperStatus: down while the port's ifAdminStatus was SET down, else as recorded."""
    admin = STORED.get((str(context.get("dataFile", "")), f"{_IF_ADMIN}{int(params.get('index', 0))}"))
    if admin is not None and int(admin) != _STATUS_UP:
        return _STATUS_DOWN
    return int(params.get("oper", _STATUS_UP))


def variate(oid: Any, tag: str, value: str, **context: Any) -> tuple[Any, str, Any]:
    """Answer one GET/GETNEXT for a `:demo` record; SETs only change `kind=store` records."""
    if not context["nextFlag"] and not context["exactMatch"]:
        return context["origOid"], tag, context["errorStatus"]
    if value.startswith("kind=store,"):
        return _store(oid, tag, value, context)
    if context["setFlag"]:
        return context["origOid"], tag, context["errorStatus"]
    kind, params = parse(value)
    if kind == "oper":
        return oid, tag, _oper(oid, tag, params, context)
    return oid, tag, evaluate(kind, params, tag, time.time() - BOOTED)


def shutdown(**context: Any) -> None:
    """Nothing to tear down; snmpsim requires the hook."""
