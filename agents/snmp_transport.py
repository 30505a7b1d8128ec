"""One SNMP request/response exchange over shared UDP sockets: v1/v2c via pysnmp v1arch, v3 via USM."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.entity import config as v3config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413.cmdgen import CommandGenerator
from pysnmp.hlapi.v1arch.asyncio import CommunityData, SnmpDispatcher
from pysnmp.hlapi.v1arch.asyncio import Udp6TransportTarget as V1Udp6
from pysnmp.hlapi.v1arch.asyncio import UdpTransportTarget as V1Udp
from pysnmp.hlapi.v3arch.asyncio import Udp6TransportTarget as V3Udp6
from pysnmp.hlapi.v3arch.asyncio import UdpTransportTarget as V3Udp
from pysnmp.hlapi.v3arch.asyncio import UsmUserData
from pysnmp.hlapi.v3arch.asyncio import auth as v3auth
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import api, errind

from agents.base import CollectError, SnmpCredentials, Target, Unreachable

PduKind = Literal["get", "next", "bulk", "set"]
# (error_status, error_index, [(ObjectName, value), ...]) of one response PDU.
Response = tuple[int, int, list[tuple[Any, Any]]]

# Big enough that bursts of large GETBULK answers are not dropped by the kernel (FIELD-NOTES).
RCVBUF_BYTES: Final = 4 * 1024 * 1024
MAX_IN_FLIGHT: Final = 64
# Spare seconds on top of timeout*(retries+1) before we stop trusting pysnmp's own timer.
DEADLINE_SLACK: Final = 2.0
_TEMPLATE_CACHE_MAX: Final = 4096

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
# the "c" variants use Reeder's (Cisco, net-snmp's AES-192-C/AES-256-C).
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
_V3_ERRORS: Final[dict[type, str]] = {
    errind.WrongDigest: "authentication failed: wrong auth key or auth protocol",
    errind.UnknownUserName: "unknown SNMPv3 user name",
    errind.DecryptionError: "decryption failed: wrong privacy key or privacy protocol",
    errind.UnsupportedSecurityLevel: "security level not supported for this user",
    errind.NotInTimeWindow: "not in time window (agent clock or boots changed)",
    errind.UnknownEngineID: "engine ID discovery failed",
    errind.AuthenticationFailure: "authentication failure",
}


def udp_socket(family: int) -> socket.socket:
    """Open an unbound non-blocking UDP socket with a large receive buffer where the kernel allows."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    force = getattr(socket, "SO_RCVBUFFORCE", None)
    for option in (force, socket.SO_RCVBUF):
        if option is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, RCVBUF_BYTES)
            break
        except OSError:
            continue
    sock.setblocking(False)
    return sock


def _open_transport(family: int) -> Any:
    """Wrap our own socket in a pysnmp asyncio UDP transport."""
    cls = udp6.Udp6AsyncioTransport if family == socket.AF_INET6 else udp.UdpAsyncioTransport
    return cls().open_server_mode(sock=udp_socket(family))


def _is_v6(address: str) -> bool:
    return ":" in address


class _HardenedDispatcher(SnmpDispatcher):  # type: ignore[misc]
    """A v1arch dispatcher that drops undecodable datagrams instead of raising in the event loop."""

    def _recv_callback(
        self, snmpEngine: Any, transportDomain: Any, transportAddress: Any, wholeMsg: Any
    ) -> Any:
        try:
            return super()._recv_callback(snmpEngine, transportDomain, transportAddress, wholeMsg)
        except Exception:  # a hostile or broken reply: the request times out or a good reply arrives
            return None


@dataclass(slots=True)
class _V3Engine:
    """One pysnmp engine per distinct v3 credential set (pysnmp keys USM users by name only)."""

    engine: Any
    families: set[int]


def build_pdu(mp_model: int, kind: PduKind, varbinds: Sequence[tuple[Any, Any]], max_repetitions: int) -> Any:
    """Build a request PDU for SNMPv1 (mp 0) or v2c/v3 (mp 1)."""
    pmod = api.PROTOCOL_MODULES[mp_model]
    if kind == "get":
        pdu = pmod.GetRequestPDU()
    elif kind == "next":
        pdu = pmod.GetNextRequestPDU()
    elif kind == "set":
        pdu = pmod.SetRequestPDU()
    else:
        pdu = pmod.GetBulkRequestPDU()
    pmod.apiPDU.set_defaults(pdu)
    if kind == "bulk":
        pmod.apiBulkPDU.set_non_repeaters(pdu, 0)
        pmod.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
    pmod.apiPDU.set_varbinds(pdu, varbinds)
    return pdu


def parse_response(pdu: Any) -> Response:
    """Split a response PDU into status, index and var-binds, refusing malformed ones."""
    try:
        pmod = api.PROTOCOL_MODULES[1]
        status = int(pmod.apiPDU.get_error_status(pdu))
        index = int(pmod.apiPDU.get_error_index(pdu, muteErrors=True))
        return status, index, pmod.apiPDU.get_varbinds(pdu)
    except Exception as exc:
        raise CollectError(f"malformed SNMP response: {type(exc).__name__}") from None


class SnmpTransport:
    """Sends one PDU and awaits its answer; shared sockets, bounded in-flight requests."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(max_in_flight)
        self._td = AsyncioDispatcher(loop=self._loop)
        self._disp = _HardenedDispatcher(self._td)
        self._families: set[int] = set()
        self._targets: dict[Hashable, Any] = {}
        self._auth: dict[tuple[str, int], Any] = {}
        self._templates: dict[Hashable, Any] = {}
        self._v3: dict[Hashable, _V3Engine] = {}
        self._v3_targets: dict[Hashable, str] = {}
        self._cmdgen = CommandGenerator()
        self._lcd = CommandGeneratorLcdConfigurator()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this transport's sockets live on."""
        return self._loop

    async def exchange(
        self,
        target: Target,
        kind: PduKind,
        varbinds: Sequence[tuple[Any, Any]],
        max_repetitions: int = 0,
        template_key: Hashable | None = None,
    ) -> Response:
        """Send one request to target and return its response; Unreachable on no answer."""
        creds = target.snmp
        if creds is None:
            raise CollectError(f"{target.address}: no SNMP credentials configured")
        if self._closed:
            raise CollectError("SNMP client is closed")
        deadline = target.timeout * (target.retries + 1) + DEADLINE_SLACK
        async with self._sem:
            try:
                async with asyncio.timeout(deadline):
                    if creds.version == "3":
                        return await self._exchange_v3(target, creds, kind, varbinds, max_repetitions)
                    return await self._exchange_community(
                        target, creds, kind, varbinds, max_repetitions, template_key
                    )
            except TimeoutError:
                raise self._unreachable(target) from None

    @staticmethod
    def _unreachable(target: Target) -> Unreachable:
        tries = target.retries + 1
        v3 = target.snmp is not None and target.snmp.version == "3"
        hint = "wrong SNMPv3 privacy key or protocol" if v3 else "community not accepted"
        return Unreachable(
            f"no SNMP answer from {target.address}:{target.port} after {tries} "
            f"tr{'y' if tries == 1 else 'ies'} of {target.timeout:g}s (host down, wrong port, or {hint})"
        )

    async def _exchange_community(
        self,
        target: Target,
        creds: SnmpCredentials,
        kind: PduKind,
        varbinds: Sequence[tuple[Any, Any]],
        max_repetitions: int,
        template_key: Hashable | None,
    ) -> Response:
        mp_model = 0 if creds.version == "1" else 1
        transport_target = await self._v1_target(target)
        auth = self._auth.get((creds.community, mp_model))
        if auth is None:
            auth = self._auth[(creds.community, mp_model)] = CommunityData(creds.community, mpModel=mp_model)
        pdu = self._pdu(mp_model, kind, varbinds, max_repetitions, template_key)
        future: asyncio.Future[tuple[Any, Any]] = self._loop.create_future()
        self._disp.send_pdu(auth, transport_target, pdu, cbFun=self._on_community_reply, cbCtx=future)
        error, rsp = await future
        if error is not None:
            if isinstance(error, errind.RequestTimedOut):
                raise self._unreachable(target)
            raise CollectError(f"{target.address}:{target.port}: {error}")
        if mp_model == 0:
            return self._parse_v1(rsp)
        return parse_response(rsp)

    @staticmethod
    def _parse_v1(pdu: Any) -> Response:
        try:
            pmod = api.PROTOCOL_MODULES[0]
            status = int(pmod.apiPDU.get_error_status(pdu))
            index = int(pmod.apiPDU.get_error_index(pdu, muteErrors=True))
            return status, index, pmod.apiPDU.get_varbinds(pdu)
        except Exception as exc:
            raise CollectError(f"malformed SNMP response: {type(exc).__name__}") from None

    def _pdu(
        self,
        mp_model: int,
        kind: PduKind,
        varbinds: Sequence[tuple[Any, Any]],
        max_repetitions: int,
        template_key: Hashable | None,
    ) -> Any:
        """Reuse a cached PDU for a repeated request (only its request-id changes)."""
        if template_key is None:
            return build_pdu(mp_model, kind, varbinds, max_repetitions)
        key = (mp_model, kind, max_repetitions, template_key)
        pdu = self._templates.get(key)
        if pdu is None:
            if len(self._templates) >= _TEMPLATE_CACHE_MAX:
                self._templates.clear()
            pdu = self._templates[key] = build_pdu(mp_model, kind, varbinds, max_repetitions)
        else:
            pmod = api.PROTOCOL_MODULES[mp_model]
            pmod.apiPDU.set_request_id(pdu, api.v1.getNextRequestID())
        return pdu

    @staticmethod
    def _on_community_reply(*args: Any) -> None:
        if len(args) == 4:  # the dispatcher is closing: (dispatcher, message, None, future)
            future = args[3]
            if not future.done():
                future.set_exception(CollectError("SNMP client closed"))
            return
        _dispatcher, _request_id, error, rsp, future = args
        if not future.done():
            future.set_result((error, rsp))

    async def _v1_target(self, target: Target) -> Any:
        key = (target.address, target.port, target.timeout, target.retries)
        cached = self._targets.get(key)
        if cached is not None:
            return cached
        v6 = _is_v6(target.address)
        family = socket.AF_INET6 if v6 else socket.AF_INET
        if family not in self._families:
            domain = udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME
            self._td.register_transport(domain, _open_transport(family))
            self._families.add(family)
        cls = V1Udp6 if v6 else V1Udp
        try:
            made = await cls.create(
                (target.address, target.port), timeout=target.timeout, retries=target.retries
            )
        except Exception as exc:
            raise Unreachable(f"cannot resolve {target.address}: {exc}") from None
        self._targets[key] = made
        return made

    async def _exchange_v3(
        self,
        target: Target,
        creds: SnmpCredentials,
        kind: PduKind,
        varbinds: Sequence[tuple[Any, Any]],
        max_repetitions: int,
    ) -> Response:
        engine, addr_name = await self._v3_target(target, creds)
        # v3 keeps the PDU object for retries and reply matching, so it is never shared.
        pdu = build_pdu(1, kind, varbinds, max_repetitions)
        future: asyncio.Future[tuple[Any, Any]] = self._loop.create_future()
        try:
            self._cmdgen.send_pdu(
                engine, addr_name, None, creds.context.encode(), pdu, self._on_v3_reply, future
            )
        except Exception as exc:  # pysnmp raises for keys it cannot use (too short, bad protocol)
            raise CollectError(f"{target.address}:{target.port}: SNMPv3 request failed: {exc}") from None
        error, rsp = await future
        if error is not None:
            if isinstance(error, errind.RequestTimedOut):
                raise self._unreachable(target)
            reason = _V3_ERRORS.get(type(error), str(error))
            raise CollectError(f"{target.address}:{target.port}: SNMPv3 user {creds.user!r}: {reason}")
        return parse_response(rsp)

    @staticmethod
    def _on_v3_reply(_engine: Any, _handle: Any, error: Any, rsp: Any, future: Any) -> None:
        if not future.done():
            future.set_result((error, rsp))

    async def _v3_target(self, target: Target, creds: SnmpCredentials) -> tuple[Any, str]:
        cred_key = (creds.user, creds.auth_protocol, creds.auth_key, creds.priv_protocol, creds.priv_key)
        holder = self._v3.get(cred_key)
        if holder is None:
            holder = self._v3[cred_key] = _V3Engine(SnmpEngine(), set())
        v6 = _is_v6(target.address)
        family = socket.AF_INET6 if v6 else socket.AF_INET
        if family not in holder.families:
            domain = udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME
            v3config.add_transport(holder.engine, domain, _open_transport(family))
            holder.families.add(family)
        key = (cred_key, target.address, target.port, target.timeout, target.retries, creds.context)
        addr_name = self._v3_targets.get(key)
        if addr_name is None:
            cls = V3Udp6 if v6 else V3Udp
            try:
                made = await cls.create(
                    (target.address, target.port), timeout=target.timeout, retries=target.retries
                )
            except Exception as exc:
                raise Unreachable(f"cannot resolve {target.address}: {exc}") from None
            try:
                addr_name, _params = self._lcd.configure(
                    holder.engine, usm_user(creds), made, creds.context.encode()
                )
            except CollectError:
                raise
            except Exception as exc:
                raise CollectError(f"SNMPv3 user {creds.user!r} cannot be configured: {exc}") from None
            self._v3_targets[key] = addr_name
        return holder.engine, addr_name

    async def close(self) -> None:
        """Fail pending requests and close every socket."""
        if self._closed:
            return
        self._closed = True
        self._disp.close()
        self._td.close_dispatcher()
        for holder in self._v3.values():
            holder.engine.close_dispatcher()
        self._v3.clear()


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
