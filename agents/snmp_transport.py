"""One SNMP request/response exchange over shared UDP sockets: v1/v2c via pysnmp v1arch, v3 via USM.

v1/v2c GET/GETNEXT/GETBULK are encoded and decoded by agents.snmp_ber (pyasn1 cost ~80% of the CPU
of a poll); pysnmp's v1arch dispatcher still owns the socket, request-ids, timeouts and retries, and
its pyasn1 decoder takes any reply our reader refuses.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Hashable, Sequence
from typing import Any, Final, Literal

from pysnmp.carrier.asyncio.dgram import udp, udp6
from pysnmp.carrier.asyncio.dispatch import AsyncioDispatcher
from pysnmp.hlapi.v1arch.asyncio import CommunityData, SnmpDispatcher
from pysnmp.hlapi.v1arch.asyncio import Udp6TransportTarget as V1Udp6
from pysnmp.hlapi.v1arch.asyncio import UdpTransportTarget as V1Udp
from pysnmp.proto import api, errind
from pysnmp.proto.rfc1902 import Null, ObjectName

from agents.base import CollectError, SnmpCredentials, Target, Unreachable
from agents.ber import BerError, BerHostile
from agents.snmp_ber import FastResponse, encode_request
from agents.snmp_ber import parse_response as fast_parse
from agents.snmp_v3 import AUTH_PROTOCOLS, PRIV_PROTOCOLS, V3Sessions, V3Timeout, usm_user
from agents.snmp_values import RawValue, raw_value

__all__ = ["AUTH_PROTOCOLS", "PRIV_PROTOCOLS", "Response", "SnmpTransport", "udp_socket", "usm_user"]

PduKind = Literal["get", "next", "bulk", "set"]
# (error_status, error_index, [(OID tuple, raw value), ...]) of one response PDU.
Response = tuple[int, int, list[tuple[tuple[int, ...], RawValue]]]

# Big enough that bursts of large GETBULK answers are not dropped by the kernel (FIELD-NOTES).
RCVBUF_BYTES: Final = 4 * 1024 * 1024
MAX_IN_FLIGHT: Final = 64
# Spare seconds on top of timeout*(retries+1) before we stop trusting pysnmp's own timer.
DEADLINE_SLACK: Final = 2.0
_NULL: Final = Null("")


def udp_socket(family: int) -> socket.socket:
    """Open an unbound non-blocking UDP socket with a large receive buffer where the kernel allows."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
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


class _Dispatcher(SnmpDispatcher):  # type: ignore[misc]
    """A v1arch dispatcher that also sends pre-encoded requests and reads replies with our BER reader."""

    def send_encoded(self, message: bytes, request_id: int, transport_target: Any, cb_fun: Any, cb_ctx: Any) -> None:
        """send_pdu() for bytes we encoded: same pending table, so pysnmp's timer still retries."""
        self._pendingReqs[request_id] = {
            "outgoingMsg": message,
            "transportTarget": transport_target,
            "cbFun": cb_fun,
            "cbCtx": cb_ctx,
            "timestamp": time.time() + transport_target.timeout,
            "retries": 0,
        }
        self.transport_dispatcher.send_message(message, transport_target.TRANSPORT_DOMAIN, transport_target.transport_address)
        self.transport_dispatcher.job_started(id(self))

    def _recv_callback(self, snmpEngine: Any, transportDomain: Any, transportAddress: Any, wholeMsg: Any) -> Any:
        try:
            reply = fast_parse(bytes(wholeMsg))
        except BerHostile:
            return None  # pyasn1 would spend seconds on it: drop the datagram
        except (BerError, ValueError, IndexError, TypeError, OSError):  # never let a datagram escape as a crash
            reply = None
        if reply is not None:
            state = self._pendingReqs.pop(reply.request_id, None)
            if state is not None:
                self.transport_dispatcher.job_finished(id(self))
                if state["cbFun"]:
                    state["cbFun"](self, reply.request_id, None, reply, state["cbCtx"])
            return None
        try:  # what our reader refuses goes through pysnmp's own decoder
            return super()._recv_callback(snmpEngine, transportDomain, transportAddress, wholeMsg)
        except Exception:  # a hostile or broken reply: the request times out or a good reply arrives
            return None


def build_pdu(mp_model: int, kind: PduKind, varbinds: Sequence[tuple[Any, Any]], max_repetitions: int) -> Any:
    """Build a pyasn1 request PDU for SNMPv1 (mp 0) or v2c/v3 (mp 1)."""
    pmod = api.PROTOCOL_MODULES[mp_model]
    factory = {"get": "GetRequestPDU", "next": "GetNextRequestPDU", "set": "SetRequestPDU", "bulk": "GetBulkRequestPDU"}
    pdu = getattr(pmod, factory[kind])()
    pmod.apiPDU.set_defaults(pdu)
    if kind == "bulk":
        pmod.apiBulkPDU.set_non_repeaters(pdu, 0)
        pmod.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
    pmod.apiPDU.set_varbinds(pdu, varbinds)
    return pdu


def parse_response(pdu: Any, mp_model: int = 1) -> Response:
    """Split a response (ours or a pyasn1 PDU) into status, index and var-binds, refusing malformed ones."""
    if isinstance(pdu, FastResponse):
        return pdu.error_status, pdu.error_index, pdu.varbinds
    try:
        pmod = api.PROTOCOL_MODULES[mp_model]
        status = int(pmod.apiPDU.get_error_status(pdu))
        index = int(pmod.apiPDU.get_error_index(pdu, muteErrors=True))
        varbinds = [(tuple(name.asTuple()), raw_value(val)) for name, val in pmod.apiPDU.get_varbinds(pdu)]
        return status, index, varbinds
    except Exception as exc:
        raise CollectError(f"malformed SNMP response: {type(exc).__name__}") from None


class SnmpTransport:
    """Sends one request and awaits its answer; shared sockets, bounded in-flight requests, one event loop."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._loop = asyncio.get_running_loop()
        self._sem = asyncio.Semaphore(max_in_flight)
        self._td = AsyncioDispatcher(loop=self._loop)
        self._disp = _Dispatcher(self._td)
        self._families: set[int] = set()
        self._targets: dict[Hashable, Any] = {}
        self._auth: dict[tuple[str, int], Any] = {}
        self._v3 = V3Sessions(self._loop, _open_transport)
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop this transport's sockets live on."""
        return self._loop

    async def exchange(
        self,
        target: Target,
        kind: PduKind,
        names: Sequence[tuple[int, ...]],
        max_repetitions: int = 0,
        values: Sequence[Any] | None = None,
    ) -> Response:
        """Send one request (values only for SET) and return its response; Unreachable on no answer."""
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
                        pdu = build_pdu(1, kind, _varbinds(names, values), max_repetitions)
                        return parse_response(await self._v3.exchange(target, creds, pdu))
                    return await self._exchange_community(target, creds, kind, names, max_repetitions, values)
            except (TimeoutError, V3Timeout):
                raise self._unreachable(target) from None

    @staticmethod
    def _unreachable(target: Target) -> Unreachable:
        tries = target.retries + 1
        v3 = target.snmp is not None and target.snmp.version == "3"
        hint = "wrong SNMPv3 privacy key or protocol" if v3 else "community not accepted"
        return Unreachable(
            f"no SNMP answer from {target.address}:{target.port} after {tries} "
            f"tr{'y' if tries == 1 else 'ies'} of {round(target.timeout, 2):g}s (host down, wrong port, or {hint})"
        )

    async def _exchange_community(
        self,
        target: Target,
        creds: SnmpCredentials,
        kind: PduKind,
        names: Sequence[tuple[int, ...]],
        max_repetitions: int,
        values: Sequence[Any] | None,
    ) -> Response:
        mp_model = 0 if creds.version == "1" else 1
        transport_target = await self._v1_target(target)
        future: asyncio.Future[tuple[Any, Any]] = self._loop.create_future()
        if kind == "set":
            auth = self._auth.get((creds.community, mp_model))
            if auth is None:
                auth = self._auth[(creds.community, mp_model)] = CommunityData(creds.community, mpModel=mp_model)
            pdu = build_pdu(mp_model, kind, _varbinds(names, values), max_repetitions)
            self._disp.send_pdu(auth, transport_target, pdu, cbFun=self._on_reply, cbCtx=future)
        else:
            request_id = int(api.v1.getNextRequestID())  # pysnmp's id space, shared with send_pdu
            try:
                message = encode_request(mp_model, creds.community.encode(), kind, request_id, list(names), max_repetitions)
            except ValueError as exc:
                raise CollectError(str(exc)) from None
            self._disp.send_encoded(message, request_id, transport_target, self._on_reply, future)
        error, rsp = await future
        if error is not None:
            if isinstance(error, errind.RequestTimedOut):
                raise self._unreachable(target)
            raise CollectError(f"{target.address}:{target.port}: {error}")
        return parse_response(rsp, mp_model)

    @staticmethod
    def _on_reply(*args: Any) -> None:
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
        v6 = ":" in target.address
        family = socket.AF_INET6 if v6 else socket.AF_INET
        if family not in self._families:
            self._td.register_transport(udp6.DOMAIN_NAME if v6 else udp.DOMAIN_NAME, _open_transport(family))
            self._families.add(family)
        cls = V1Udp6 if v6 else V1Udp
        try:
            made = await cls.create((target.address, target.port), timeout=target.timeout, retries=target.retries)
        except Exception as exc:
            raise Unreachable(f"cannot resolve {target.address}: {exc}") from None
        self._targets[key] = made
        return made

    async def close(self) -> None:
        """Fail pending requests and close every socket."""
        self.close_now()

    def close_now(self) -> None:
        """close() for callers outside this transport's event loop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._disp.close()
            self._td.close_dispatcher()
            self._v3.close()
        except RuntimeError:  # the loop is already closed; the sockets go with it
            pass


def _varbinds(names: Sequence[tuple[int, ...]], values: Sequence[Any] | None) -> list[tuple[Any, Any]]:
    """pyasn1 var-binds for the pysnmp-encoded paths (SET and SNMPv3)."""
    if values is None:
        return [(ObjectName(name), _NULL) for name in names]
    return [(ObjectName(name), value) for name, value in zip(names, values, strict=True)]
