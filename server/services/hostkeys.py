"""SSH host-key enrolment: an admin confirms the key a server offered (trust on first use, by a person), or removes one."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth.access import Principal
from server.polling import pipeline
from server.runtime import Services
from server.services.errors import Conflict, NotFound
from server.store import accounts, hostkeys
from server.store.db import Connection


@dataclass(frozen=True)
class OfferedKey:
    """The key a device's SSH server offers now that is not trusted."""

    key_line: str
    key_type: str
    fingerprint: str
    problem: str  # "unknown" or "changed"


def offered_key(conn: Connection, device_id: int) -> OfferedKey | None:
    """The untrusted key the device's SSH server last offered, if any."""
    found = hostkeys.device_facts(conn, device_id)
    if found is None:
        raise NotFound("no such device")
    facts = found.facts
    if not facts.get("ssh_host_key_offered") or not facts.get("ssh_host_key_problem"):
        return None
    line = str(facts["ssh_host_key_offered"])
    return OfferedKey(line, line.split()[0], str(facts.get("ssh_host_key_fingerprint") or ""), str(facts["ssh_host_key_problem"]))


def trust_offered(svc: Services, p: Principal, ip: str, device_id: int, fingerprint: str) -> str:
    """Pin the offered key if its fingerprint is the one the admin confirmed; returns that fingerprint."""
    with svc.engine.begin() as conn:
        offered = offered_key(conn, device_id)
        if offered is None:
            raise Conflict("this device's SSH server has not offered an untrusted key")
        if offered.fingerprint != fingerprint.strip():
            raise Conflict("the offered key changed since you looked; check it again")
        name = hostkeys.device_name(conn, device_id)
        hostkeys.trust(conn, device_id, offered.key_line, offered.fingerprint, p.user.name)
        accounts.write_audit(conn, p.user, "ssh.host_key.trust", name,
                             {"fingerprint": offered.fingerprint, "was": offered.problem}, ip)
    pipeline.reschedule(svc)
    return offered.fingerprint


def remove(svc: Services, p: Principal, ip: str, device_id: int, key_id: int) -> None:
    """Remove an enrolled key (keys pinned in the config file stay)."""
    with svc.engine.begin() as conn:
        if not hostkeys.remove(conn, device_id, key_id):
            raise NotFound("no such key on that device")
        accounts.write_audit(conn, p.user, "ssh.host_key.remove", str(device_id), {"key_id": key_id}, ip)
    pipeline.reschedule(svc)
