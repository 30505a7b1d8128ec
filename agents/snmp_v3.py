"""SNMPv3 (USM) requests through pysnmp's v3arch engine: credential mapping and one exchange."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.entity import config as v3config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413.cmdgen import CommandGenerator
from pysnmp.hlapi.v3arch.asyncio import Udp6TransportTarget, UdpTransportTarget, UsmUserData
from pysnmp.hlapi.v3arch.asyncio import auth as v3auth
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import errind

from agents.base import CollectError, SnmpCredentials, Target, Unreachable

AUTH_PROTOCOLS: Final[dict[str, Any]] = {
    "md5": v3auth.usmHMACMD5AuthProtocol,
    "sha": v3auth.usmHMACSHAAuthProtocol,
    "sha1": v3auth.usmHMACSHAAuthProtocol,
    "sha224": v3auth.usmHMAC128SHA224AuthProtocol,
    "sha256": v3auth.usmHMAC192SHA256AuthProtocol,
    "sha384": v3auth.usmHMAC256SHA384AuthProtocol,
    "sha512": v3auth.usmHMAC384SHA512AuthProtocol,
}
# aes192/aes256 use the Blumenthal key extension (net-snmp's AES-192/AES-256);
# the "c" variants use Reeder's (Cisco; net-snmp's AES-192-C/AES-256-C).
PRIV_PROTOCOLS: Final[dict[str, Any]] = {
    "des": v3auth.usmDESPrivProtocol,
    "3des": v3auth.usm3DESEDEPrivProtocol,
    "aes": v3auth.usmAesCfb128Protocol,
    "aes128": v3auth.usmAesCfb128Protocol,
    "aes192": v3auth.usmAesBlumenthalCfb192Protocol,
    "aes256": v3auth.usmAesBlumenthalCfb256Protocol,
    "aes192c": v3auth.usmAesCfb192Protocol,
    "aes256c": v3auth.usmAesCfb256Protocol,
}

# Why a v3 request failed, in words an admin can act on.
V3_ERRORS: Final[dict[type, str]] = {
    errind.WrongDigest: "authentication failed: wrong auth key or auth protocol",
    errind.UnknownUserName: "unknown SNMPv3 user name",
    errind.DecryptionError: "decryption failed: wrong privacy key or privacy protocol",
    errind.UnsupportedSecurityLevel: "security level not supported for this user",
    errind.NotInTimeWindow: "not in time window (agent clock or boots changed)",
    errind.UnknownEngineID: "engine ID discovery failed",
    errind.AuthenticationFailure: "authentication failure",
}


def usm_user(creds: SnmpCredentials) -> Any:
    """Map our credential names to a pysnmp UsmUserData (security level follows the keys given)."""
    auth_proto = priv_proto = None
    if creds.auth_key:
        name = (creds.auth_protocol or "sha").lower().replace("-", "")
        auth_proto = AUTH_PROTOCOLS.get(name)
        if auth_proto is None:
            raise CollectError(f"unknown SNMPv3 auth protocol {creds.auth_protocol!r}")
    if creds.priv_key:
        if not creds.auth_key:
            raise CollectError("SNMPv3 privacy needs an auth key too")
        name = (creds.priv_protocol or "aes128").lower().replace("-", "")
        priv_proto = PRIV_PROTOCOLS.get(name)
        if priv_proto is None:
            raise CollectError(f"unknown SNMPv3 privacy protocol {creds.priv_protocol!r}")
    return UsmUserData(
        creds.user,
        authKey=creds.auth_key or None,
        privKey=creds.priv_key or None,
        authProtocol=auth_proto or v3auth.usmNoAuthProtocol,
        privProtocol=priv_proto or v3auth.usmNoPrivProtocol,
    )


class V3Timeout(Exception):
    """No answer after the configured retries; the caller words the Unreachable."""


@dataclass(slots=True)
class _Engine:
    """One pysnmp engine per distinct credential set (pysnmp keys USM users by name only)."""

    engine: Any
    families: set[int]


class V3Sessions:
    """Sends v3 PDUs; engines and configured targets are created once and reused."""

    def __init__(self, loop: asyncio.AbstractEventLoop, open_transport: Callable[[int], Any]) -> None:
        self._loop = loop
        self._open_transport = open_transport
        self._engines: dict[Hashable, _Engine] = {}
        self._targets: dict[Hashable, str] = {}
        self._cmdgen = CommandGenerator()
        self._lcd = CommandGeneratorLcdConfigurator()

    async def exchange(self, target: Target, creds: SnmpCredentials, pdu: Any) -> Any:
        """Send a v2c-style PDU under USM; returns the response PDU, raising CollectError/Unreachable."""
        engine, addr_name = await self._target(target, creds)
        future: asyncio.Future[tuple[Any, Any]] = self._loop.create_future()
        try:
            self._cmdgen.send_pdu(engine, addr_name, None, creds.context.encode(), pdu, _on_reply, future)
        except Exception as exc:  # pysnmp raises for keys it cannot use (too short, bad protocol)
            raise CollectError(f"{target.address}:{target.port}: SNMPv3 request failed: {exc}") from None
        error, rsp = await future
        if error is not None:
            if isinstance(error, errind.RequestTimedOut):
                raise V3Timeout
            reason = V3_ERRORS.get(type(error), str(error))
            raise CollectError(f"{target.address}:{target.port}: SNMPv3 user {creds.user!r}: {reason}")
        return rsp

    async def _target(self, target: Target, creds: SnmpCredentials) -> tuple[Any, str]:
        cred_key = (creds.user, creds.auth_protocol, creds.auth_key, creds.priv_protocol, creds.priv_key)
        holder = self._engines.get(cred_key)
        if holder is None:
            holder = self._engines[cred_key] = _Engine(SnmpEngine(), set())
        v6 = ":" in target.address
        family = socket.AF_INET6 if v6 else socket.AF_INET
        if family not in holder.families:
            v3config.add_transport(holder.engine, udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME, self._open_transport(family))
            holder.families.add(family)
        key = (cred_key, target.address, target.port, target.timeout, target.retries, creds.context)
        addr_name = self._targets.get(key)
        if addr_name is None:
            cls = Udp6TransportTarget if v6 else UdpTransportTarget
            try:
                made = await cls.create((target.address, target.port), timeout=target.timeout, retries=target.retries)
            except Exception as exc:
                raise Unreachable(f"cannot resolve {target.address}: {exc}") from None
            try:
                addr_name, _params = self._lcd.configure(holder.engine, usm_user(creds), made, creds.context.encode())
            except CollectError:
                raise
            except Exception as exc:
                raise CollectError(f"SNMPv3 user {creds.user!r} cannot be configured: {exc}") from None
            self._targets[key] = addr_name
        return holder.engine, addr_name

    def close(self) -> None:
        """Close every engine's sockets."""
        for holder in self._engines.values():
            holder.engine.close_dispatcher()
        self._engines.clear()
        self._targets.clear()


def _on_reply(_engine: Any, _handle: Any, error: Any, rsp: Any, future: Any) -> None:
    if not future.done():
        future.set_result((error, rsp))
