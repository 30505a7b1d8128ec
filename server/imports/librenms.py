"""LibreNMS device list (the JSON of GET /api/v0/devices) -> devices with their SNMP access and a kind."""

from __future__ import annotations

from typing import Any

from server.config.inventory import validate_address
from server.imports.common import Imported, ImportError_, items, safe_name, shown

# LibreNMS os -> pocketnoc kind (a device family where one exists; otherwise the os name itself).
KINDS = {
    "linux": "linux", "ios": "cisco-ios", "iosxe": "cisco-ios", "iosxr": "cisco-ios", "nxos": "cisco-ios",
    "asa": "cisco-asa", "ciscosb": "cisco-sb", "junos": "juniper-junos", "routeros": "mikrotik-routeros",
    "procurve": "hpe-procurve", "arubaos-cx": "aruba-cx", "arubainstant": "aruba-instant", "fortigate": "fortinet-fortigate",
    "panos": "paloalto-panos", "pfsense": "pfsense", "opnsense": "opnsense", "freebsd": "freebsd", "dsm": "synology-dsm",
    "qnap": "qnap", "truenas": "truenas", "freenas": "truenas", "airos": "ubiquiti-airos", "edgeos": "ubiquiti-edgeos",
    "edgeswitch": "ubiquiti-edgeswitch", "unifi": "ubiquiti-unifi", "vmware-esxi": "vmware-esxi", "apc": "apc-ups",
    "eatonups": "eaton-ups", "drac": "dell-idrac", "dnos": "dell-os10", "powerconnect": "dell-powerconnect",
    "dlink": "dlink", "netgear": "netgear", "tplink": "tplink", "windows": "windows",
}  # fmt: skip
_AUTH = {"md5": "md5", "sha": "sha", "sha-224": "sha224", "sha-256": "sha256", "sha-384": "sha384", "sha-512": "sha512"}
_PRIV = {"des": "des", "aes": "aes128", "aes-128": "aes128", "aes-192": "aes192", "aes-256": "aes256"}


def _snmp(d: dict[str, Any], what: str, result: Imported) -> dict[str, Any] | None:
    version = str(d.get("snmpver") or "v2c").lower().lstrip("v")
    port = d.get("port") if isinstance(d.get("port"), int) and 1 <= d["port"] <= 65535 else 161
    if str(d.get("transport") or "udp").lower() not in ("udp", "udp6"):
        result.skip(what, f"SNMP over {shown(d.get('transport'), 10)} is not supported; imported without SNMP")
        return None
    if version in ("1", "2c"):
        if not d.get("community"):
            result.skip(what, "no SNMP community in the export (LibreNMS hides it from read-only API users); add it by hand")
            return None
        return {"version": version, "port": port, "community": str(d["community"])}
    if version != "3":
        result.skip(what, f"unknown SNMP version {shown(d.get('snmpver'), 10)!r}; imported without SNMP")
        return None
    level = str(d.get("authlevel") or "noAuthNoPriv")
    snmp: dict[str, Any] = {"version": "3", "port": port, "user": str(d.get("authname") or "")}
    if level in ("authNoPriv", "authPriv"):
        auth = _AUTH.get(str(d.get("authalgo") or "").lower())
        if auth is None or not d.get("authpass"):
            result.skip(what, "SNMPv3 authentication algorithm or key missing/unsupported; imported without SNMP")
            return None
        snmp.update(auth_protocol=auth, auth_key=str(d["authpass"]))
    if level == "authPriv":
        priv = _PRIV.get(str(d.get("cryptoalgo") or "").lower())
        if priv is None or not d.get("cryptopass"):
            result.skip(what, "SNMPv3 privacy algorithm or key missing/unsupported; imported without SNMP")
            return None
        snmp.update(priv_protocol=priv, priv_key=str(d["cryptopass"]))
    if not snmp["user"] or any(len(str(snmp.get(k) or "12345678")) < 8 for k in ("auth_key", "priv_key")):
        result.skip(what, "SNMPv3 user missing or a key shorter than 8 characters; imported without SNMP")
        return None
    return snmp


def convert(data: Any) -> Imported:
    """Map LibreNMS's /api/v0/devices answer ({"status": "ok", "devices": [...]}) to devices."""
    if isinstance(data, dict) and "devices" in data:
        data = data["devices"]
    elif not isinstance(data, list):
        raise ImportError_("not a LibreNMS device list: expected the JSON of /api/v0/devices (an object with devices)")
    result = Imported()
    names: set[str] = set()
    for d in items(data, "devices"):
        if not isinstance(d, dict):
            result.skip("a device", "not an object")
            continue
        label = d.get("hostname") or d.get("sysName") or f"device {d.get('device_id')}"
        what = f"device {label!r}"
        address = None
        for candidate in (d.get("hostname"), d.get("ip"), d.get("overwrite_ip")):
            try:
                address = validate_address(str(candidate or ""))
                break
            except ValueError:
                continue
        if address is None:
            result.skip(what, "no usable host name or IP address")
            continue
        name = safe_name(d.get("sysName") or d.get("display") or d.get("hostname"), names, "device")
        device: dict[str, Any] = {"name": name, "address": address}
        os_name = str(d.get("os") or "").lower()
        if os_name and os_name != "generic":
            device["kind"] = KINDS.get(os_name) or safe_name(os_name, set(), "generic", lower=True)[:32]
        if isinstance(d.get("location"), str) and d["location"].strip():
            device["tags"] = [safe_name(d["location"], set(), "site")[:32].strip("-._") or "site"]
        if d.get("snmp_disable"):
            result.notes.append(f"{shown(what)}: SNMP disabled in LibreNMS; imported with a ping check")
        elif (snmp := _snmp(d, what, result)) is not None:
            device["snmp"] = snmp
        if d.get("disabled") or d.get("ignore"):
            device["enabled"] = False
        result.devices.append(device)
    return result
