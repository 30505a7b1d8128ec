"""SNMPv3 notifications through pysnmp's engine: USM users, engine-ID learning for traps, inform ACKs."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntfrcv
from pysnmp.proto import rfc1902
from pysnmp.proto.api import v2c

from agents.base import SnmpCredentials
from agents.snmp_transport import AUTH_PROTOCOLS, PRIV_PROTOCOLS
from agents.traps_ber import V3Header
from agents.traps_model import asn1_text

log = logging.getLogger(__name__)

# (engine ID, user) rows learned from traps; the oldest is forgotten first (an attacker can only cause churn).
MAX_LEARNED: Final = 4096
_INFORM_TAG = v2c.InformRequestPDU.tagSet

# What became of one v3 datagram handed to pysnmp.
ACCEPTED, DISCOVERY, AUTH, MALFORMED = "accepted", "discovery", "auth", "malformed"


@dataclass(frozen=True, slots=True)
class V3Notification:
    """A v3 trap or inform that passed USM, with its var-binds already rendered as text."""

    address: tuple[str, int]
    user: str
    varbinds: list[tuple[str, str]]
    truncated: bool
    inform: bool
    request_id: int


@dataclass(frozen=True, slots=True)
class _User:
    name: bytes
    level: int  # the least security level this user's messages must have
    auth: Any
    priv: Any
    master_auth: Any
    master_priv: Any


def _protocols(creds: SnmpCredentials) -> tuple[Any, Any, int]:
    """Map our protocol names to pysnmp's, refusing unknown ones and privacy without auth."""
    auth = priv = None
    if creds.auth_key:
        auth = AUTH_PROTOCOLS.get((creds.auth_protocol or "sha").lower().replace("-", ""))
        if auth is None:
            raise ValueError(f"SNMPv3 user {creds.user!r}: unknown auth protocol {creds.auth_protocol!r}")
    if creds.priv_key:
        if auth is None:
            raise ValueError(f"SNMPv3 user {creds.user!r}: privacy needs an auth key too")
        priv = PRIV_PROTOCOLS.get((creds.priv_protocol or "aes128").lower().replace("-", ""))
        if priv is None:
            raise ValueError(f"SNMPv3 user {creds.user!r}: unknown privacy protocol {creds.priv_protocol!r}")
    level = 3 if priv is not None else 2 if auth is not None else 1
    return auth or config.USM_AUTH_NONE, priv or config.USM_PRIV_NONE, level


def prepare_users(users: Sequence[SnmpCredentials]) -> list[_User]:
    """Validate users and hash their pass phrases once (~35 ms each; run it off the event loop)."""
    prepared = []
    for creds in users:
        if not creds.user:
            raise ValueError("SNMPv3 user without a name")
        auth, priv, level = _protocols(creds)
        master_auth = master_priv = None
        if creds.auth_key:
            master_auth = config.AUTH_SERVICES[auth].hash_passphrase(rfc1902.OctetString(creds.auth_key))
        if creds.priv_key:
            master_priv = config.PRIV_SERVICES[priv].hash_passphrase(auth, rfc1902.OctetString(creds.priv_key))
        prepared.append(_User(creds.user.encode(), level, auth, priv, master_auth, master_priv))
    return prepared


class V3Engine:
    """One pysnmp engine: authenticates and decrypts v3 traps and informs, answers discovery and ACKs informs."""

    def __init__(
        self,
        users: Sequence[_User],
        engine_id: bytes | None,
        on_notification: Callable[[V3Notification], None],
        max_varbinds: int,
        max_value_bytes: int,
    ) -> None:
        self.engine = SnmpEngine(rfc1902.OctetString(engine_id)) if engine_id else SnmpEngine()
        self._users = {u.name: u for u in users}
        self._learned: OrderedDict[tuple[bytes, bytes], None] = OrderedDict()
        self._on_notification = on_notification
        self._max_varbinds = max_varbinds
        self._cap = max_value_bytes
        self._outcome: str | None = None
        self._trial: tuple[bytes, bytes] | None = None
        builder = self.engine.get_mib_builder()
        (engine_id_obj,) = builder.import_symbols("__SNMP-FRAMEWORK-MIB", "snmpEngineID")
        self.engine_id: bytes = engine_id_obj.syntax.asOctets()
        usm = "__SNMP-USER-BASED-SM-MIB"
        self._discovery_counter = builder.import_symbols(usm, "usmStatsUnknownEngineIDs")[0]
        self._malformed_counters = (
            builder.import_symbols("__SNMPv2-MIB", "snmpInASNParseErrs")[0],
            builder.import_symbols("__SNMP-MPD-MIB", "snmpUnknownPDUHandlers")[0],
        )
        for user in users:
            self._add_user(user, None)
        self._receiver = ntfrcv.NotificationReceiver(self.engine, self._received)

    def _add_user(self, user: _User, engine_id: bytes | None) -> None:
        config.add_v3_user(
            self.engine,
            user.name,
            user.auth,
            user.master_auth,
            user.priv,
            user.master_priv,
            securityEngineId=None if engine_id is None else rfc1902.OctetString(engine_id),
            authKeyType=config.USM_KEY_TYPE_MASTER,
            privKeyType=config.USM_KEY_TYPE_MASTER,
        )

    def _forget(self, engine_id: bytes, name: bytes) -> None:
        """Drop one learned row without delete_v3_user's walk over the whole user table."""
        builder = self.engine.get_mib_builder()
        (entry,) = builder.import_symbols("SNMP-USER-BASED-SM-MIB", "usmUserEntry")
        index = entry.getInstIdFromIndices(rfc1902.OctetString(engine_id), rfc1902.OctetString(name))
        self.engine.message_dispatcher.mib_instrum_controller.write_variables(
            ((*entry.name, 13, *index), "destroy"), snmpEngine=self.engine
        )

    @property
    def learned(self) -> int:
        """How many (engine ID, user) rows were learned from authentic traps."""
        return len(self._learned)

    def attach(self, domain: tuple[int, ...], transport: Any) -> None:
        """Let the engine send through (and receive from) our transport."""
        config.add_transport(self.engine, domain, transport)

    def check(self, header: V3Header) -> str | None:
        """Decide before pysnmp's costly decode: None to go on, else AUTH or MALFORMED; learns trap engine IDs."""
        if header.security_model != 3:
            return MALFORMED
        if not header.user:
            # Discovery probe (an inform sender asking for our engine ID): pysnmp answers with a Report.
            return None if header.level == 1 else AUTH
        user = self._users.get(header.user)
        if user is None or header.level < user.level:
            return AUTH  # unknown user, or a weaker level than configured (pysnmp accepts those for traps)
        engine_id = header.engine_id
        if engine_id and engine_id != self.engine_id and 5 <= len(engine_id) <= 32:
            key = (engine_id, user.name)
            if key in self._learned:
                self._learned.move_to_end(key)
            else:
                if len(self._learned) >= MAX_LEARNED:
                    self._forget(*self._learned.popitem(last=False)[0])
                self._add_user(user, engine_id)
                self._learned[key] = None
                self._trial = key
        return None

    def feed(self, transport: Any, address: tuple[str, int], datagram: bytes) -> str:
        """Run one datagram through pysnmp; a row learned for it is kept only if it was accepted."""
        trial, self._trial = self._trial, None
        outcome = self._feed(transport, address, datagram)
        if trial is not None and outcome != ACCEPTED and trial in self._learned:
            del self._learned[trial]  # forged messages must not fill the table
            self._forget(*trial)
        return outcome

    def _feed(self, transport: Any, address: tuple[str, int], datagram: bytes) -> str:
        self._outcome = None
        discovery = int(self._discovery_counter.syntax)
        malformed = [int(c.syntax) for c in self._malformed_counters]
        try:
            self.engine.transport_dispatcher._callback_function(transport, address, datagram)
        except Exception:  # pysnmp raising on hostile input: a drop, never a crash
            log.debug("pysnmp failed on a v3 datagram from %s", address[0], exc_info=True)
            return self._outcome or MALFORMED
        if self._outcome is not None:
            return self._outcome
        if int(self._discovery_counter.syntax) != discovery:
            return DISCOVERY
        if [int(c.syntax) for c in self._malformed_counters] != malformed:
            return MALFORMED
        return AUTH

    def _received(
        self, engine: Any, state_ref: Any, context_engine_id: Any, context_name: Any, varbinds: Any, cb_ctx: Any
    ) -> None:
        """NotificationReceiver callback (the inform is already ACKed): render and hand on."""
        try:
            context = engine.observer.get_execution_context("rfc3412.receiveMessage:request")
            address = context["transportAddress"]
            pdu = context["pdu"]
            limit = self._max_varbinds + 2  # sysUpTime.0 and snmpTrapOID.0 are not counted
            rendered = [(".".join(map(str, name.asTuple())), asn1_text(value, self._cap)) for name, value in varbinds[:limit]]
            note = V3Notification(
                (str(address[0]), int(address[1])),
                bytes(context["securityName"]).decode("utf-8", errors="replace"),
                rendered,
                len(varbinds) > limit,
                pdu.tagSet == _INFORM_TAG,
                int(v2c.apiPDU.get_request_id(pdu)),
            )
        except Exception:
            log.debug("undecodable v3 notification", exc_info=True)
            self._outcome = MALFORMED
            return
        self._outcome = ACCEPTED
        self._on_notification(note)

    def close(self) -> None:
        """Unregister the receiver and close the engine's dispatcher (the transport is closed by its owner)."""
        self._receiver.close(self.engine)
        dispatcher = self.engine.transport_dispatcher
        if dispatcher is not None:
            dispatcher.close_dispatcher()
