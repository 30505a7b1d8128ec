"""The LDAP client of directory accounts (ldap3, blocking: callers run it in a thread): connect over LDAPS or StartTLS
with a verified certificate, bind as the service account, search people, read one, and change what the catalog allows.

Every value typed by a person goes into a filter through `escape_filter_chars`, so `*)(` is searched for literally.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_filter_chars

RELAX_RULES = "1.3.6.1.4.1.4203.666.5.12"  # lets a manager set ppolicy's pwdReset
Raw = dict[str, list[str]]  # attribute name (lower case) -> values as text

AD_PERSON = "(&(objectCategory=person)(objectClass=user))"
LDAP_PERSON = "(|(objectClass=inetOrgPerson)(objectClass=posixAccount))"
AD_SEARCHED = ("sAMAccountName", "userPrincipalName", "mail", "displayName", "givenName", "sn", "cn")
LDAP_SEARCHED = ("uid", "mail", "cn", "displayName", "givenName", "sn")
AD_ATTRS = [
    "sAMAccountName", "userPrincipalName", "displayName", "cn", "mail", "userAccountControl",
    "msDS-User-Account-Control-Computed", "lockoutTime", "badPwdCount", "badPasswordTime", "pwdLastSet",
    "msDS-UserPasswordExpiryTimeComputed", "lastLogon", "lastLogonTimestamp", "memberOf", "adminCount", "primaryGroupID",
]
LDAP_ATTRS = [
    "uid", "cn", "displayName", "mail", "pwdAccountLockedTime", "pwdFailureTime", "pwdChangedTime", "pwdReset",
    "pwdPolicySubentry", "authTimestamp", "memberOf",
]
LIST_ATTRS = {"active-directory": [*AD_ATTRS[:6], "msDS-User-Account-Control-Computed"], "ldap": LDAP_ATTRS[:4]}


class DirectoryError(Exception):
    """The directory cannot be reached or does not accept pocketnoc's bind (a message for people)."""


class Refused(DirectoryError):
    """The directory refused a change; `message` is its own reason in words (a password policy, a right)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Everything needed to talk to one directory (the bind password already unsealed)."""

    name: str
    kind: str  # active-directory | ldap
    host: str
    port: int
    security: str  # ldaps | starttls | plain
    verify: bool
    ca_file: Path | None
    tls_name: str | None
    bind_dn: str
    password: str
    base_dns: tuple[str, ...]
    timeout: float


def words(message: str) -> str:
    """A directory's diagnostic without AD's hex prefix: '0000052D: Constraint violation - x' -> 'Constraint violation - x'."""
    text = message.strip().rstrip("\x00")
    head, sep, rest = text.partition(": ")
    if sep and len(head) == 8 and all(c in "0123456789abcdefABCDEF" for c in head):
        text = rest
    return text[:500]


class Client:
    """One bound connection to a directory, used for one request (open it with `session()`)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.ep = endpoint
        self.kind = endpoint.kind

    def _server(self) -> Server:
        tls = None
        if self.ep.security != "plain":
            names = [self.ep.tls_name] if self.ep.tls_name else None
            tls = Tls(
                validate=ssl.CERT_REQUIRED if self.ep.verify else ssl.CERT_NONE,
                ca_certs_file=str(self.ep.ca_file) if self.ep.ca_file else None,
                valid_names=names,
                version=ssl.PROTOCOL_TLS_CLIENT,
            )
        return Server(self.ep.host, port=self.ep.port, use_ssl=self.ep.security == "ldaps", tls=tls, get_info=NONE,
                      connect_timeout=self.ep.timeout)

    def _open(self, user: str, password: str) -> tuple[Connection, bool]:
        """A connection bound as `user` (False: the directory refused the credentials)."""
        where = f"directory {self.ep.name} at {self.ep.host}:{self.ep.port}"
        conn = Connection(self._server(), user=user, password=password, authentication=SIMPLE,
                          receive_timeout=math.ceil(self.ep.timeout), raise_exceptions=False)  # whole seconds (SO_RCVTIMEO)
        try:
            conn.open(read_server_info=False)
            if self.ep.security == "starttls" and not conn.start_tls(read_server_info=False):
                raise DirectoryError(f"{where} refused StartTLS: {words(conn.result.get('message', ''))}")
            return conn, bool(conn.bind())
        except (LDAPException, OSError) as exc:
            _close(conn)
            raise DirectoryError(f"cannot reach {where}: {exc}") from None

    @contextmanager
    def session(self) -> Iterator[Client]:
        """Bind as the service account for the length of a `with` block."""
        conn, ok = self._open(self.ep.bind_dn, self.ep.password)
        if not ok:
            _close(conn)
            raise DirectoryError(f"directory {self.ep.name} refused pocketnoc's bind account: {words(conn.result['message'])}")
        self.conn = conn
        try:
            yield self
        except (LDAPException, OSError) as exc:
            raise DirectoryError(f"directory {self.ep.name}: {exc}") from None
        finally:
            _close(conn)

    def try_bind(self, dn: str, password: str) -> str | None:
        """Bind as a person: None when it works, else the directory's reason (a lab check; nothing stays bound)."""
        conn, ok = self._open(dn, password)
        reason = None if ok else words(conn.result.get("message") or conn.result.get("description", ""))
        _close(conn)
        return reason

    def _search(self, base: str, query: str, attrs: list[str], scope: str = SUBTREE, limit: int = 0) -> list[tuple[str, Raw]]:
        self.conn.search(base, query, scope, attributes=attrs, size_limit=limit, time_limit=int(self.ep.timeout) + 1)
        if self.conn.result["result"] not in (0, 4, 32):  # 4: size limit reached, 32: no such base
            raise DirectoryError(f"directory {self.ep.name} refused the search: {words(self.conn.result['message'])}")
        found = []
        for item in self.conn.response or []:
            if item.get("type") == "searchResEntry":
                raw = item.get("raw_attributes", {})
                found.append((str(item["dn"]), {k.lower(): [_text(v) for v in vals] for k, vals in raw.items()}))
        return found

    def search_people(self, text: str, limit: int) -> list[tuple[str, Raw]]:
        """People whose login, e-mail or name starts with `text` (escaped: a literal search), at most `limit`."""
        value = escape_filter_chars(text)
        ad = self.kind == "active-directory"
        fields = AD_SEARCHED if ad else LDAP_SEARCHED
        query = f"(&{AD_PERSON if ad else LDAP_PERSON}(|{''.join(f'({f}={value}*)' for f in fields)}))"
        found: list[tuple[str, Raw]] = []
        for base in self.ep.base_dns:
            found += self._search(base, query, LIST_ATTRS[self.kind], limit=limit - len(found))
            if len(found) >= limit:
                break
        return found[:limit]

    def find_person(self, login: str) -> tuple[str, Raw] | None:
        """One person by login (sAMAccountName or uid), with every attribute the person page shows."""
        value = escape_filter_chars(login)
        ad = self.kind == "active-directory"
        query = f"(&{AD_PERSON}(sAMAccountName={value}))" if ad else f"(&{LDAP_PERSON}(uid={value}))"
        for base in self.ep.base_dns:
            found = self._search(base, query, AD_ATTRS if ad else LDAP_ATTRS, limit=2)
            if found:
                return found[0]
        return None

    def read(self, dn: str, attrs: list[str]) -> Raw:
        """Some attributes of one entry (empty when it does not exist)."""
        found = self._search(dn, "(objectClass=*)", attrs, scope=BASE)
        return found[0][1] if found else {}

    def root(self) -> Raw:
        """The root DSE (AD: defaultNamingContext)."""
        return self.read("", ["defaultNamingContext", "namingContexts"])

    def domain(self) -> tuple[str, str | None, Raw]:
        """AD: the domain's DN, its SID and its password and lockout policy (maxPwdAge, lockoutDuration)."""
        dn = (self.root().get("defaultnamingcontext") or [""])[0]
        self.conn.search(dn, "(objectClass=domain)", BASE, attributes=["objectSid", "maxPwdAge", "lockoutDuration"])
        entry = next((e for e in self.conn.response or [] if e.get("type") == "searchResEntry"), None)
        if entry is None:
            return dn, None, {}
        raw = entry.get("raw_attributes", {})
        sid = format_sid(raw["objectSid"][0]) if raw.get("objectSid") else None
        policy = {k.lower(): [_text(v) for v in vals] for k, vals in raw.items() if k.lower() != "objectsid"}
        return dn, sid, policy

    def member_in_chain(self, dn: str, groups: list[str]) -> bool:
        """AD: is `dn` a member of any of `groups`, directly or through nested groups (LDAP_MATCHING_RULE_IN_CHAIN)?"""
        if not groups:
            return False
        rule = "".join(f"(memberOf:1.2.840.113556.1.4.1941:={escape_filter_chars(g)})" for g in groups)
        return bool(self._search(dn, f"(|{rule})", ["cn"], scope=BASE))

    def groups_with_member(self, dn: str) -> list[str]:
        """LDAP: the groups (groupOfNames, groupOfUniqueNames) that list `dn` as a member."""
        value = escape_filter_chars(dn)
        query = f"(|(&(objectClass=groupOfNames)(member={value}))(&(objectClass=groupOfUniqueNames)(uniqueMember={value})))"
        found: list[str] = []
        for base in self.ep.base_dns:
            found += [g for g, _ in self._search(base, query, ["cn"])]
        return found

    def find_groups_by_sid(self, sids: list[str]) -> list[str]:
        """AD: the DNs of the groups with these SIDs (the well-known admin groups, whatever their localized names)."""
        query = "(|" + "".join(f"(objectSid={escape_filter_chars(s)})" for s in sids) + ")"
        found: list[str] = []
        for base in self.ep.base_dns:
            found += [g for g, _ in self._search(base, query, ["cn"])]
        return found

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[str]]]], relax: bool = False) -> None:
        """Apply a modify (`relax`: with the Relax Rules control, for ppolicy's operational attributes); Refused
        carries the directory's own reason."""
        controls = [(RELAX_RULES, True, None)] if relax else None
        if not self.conn.modify(dn, changes, controls=controls):
            raise Refused(words(self.conn.result.get("message") or self.conn.result.get("description", "refused")))

    def replace(self, dn: str, attribute: str, value: str, relax: bool = False) -> None:
        """Replace one attribute's value."""
        self.modify(dn, {attribute: [(MODIFY_REPLACE, [value])]}, relax)

    def clear_lockout(self, dn: str) -> None:
        """LDAP (ppolicy): remove the lock and the failure times behind it (absent failure times are fine)."""
        self.modify(dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]})
        self.conn.modify(dn, {"pwdFailureTime": [(MODIFY_DELETE, [])]})

    def member(self, group: str, dn: str, add: bool) -> None:
        """Add `dn` to a group or take it out (attribute `member`)."""
        self.modify(group, {"member": [(MODIFY_ADD if add else MODIFY_DELETE, [dn])]})

    def set_password(self, dn: str, password: str) -> None:
        """Set a new password as an administrator: AD's unicodePwd, or LDAP's Password Modify operation."""
        if self.kind == "active-directory":
            ok = self.conn.extend.microsoft.modify_password(dn, password)
        else:
            ok = self.conn.extend.standard.modify_password(user=dn, new_password=password)
        if not ok:
            raise Refused(words(self.conn.result.get("message") or self.conn.result.get("description", "refused")))


def _close(conn: Connection) -> None:
    """Unbind, whatever state the socket is in (a failed TLS handshake leaves it closed)."""
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
