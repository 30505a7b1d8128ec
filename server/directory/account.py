"""A directory account as the person page shows it, read from raw attributes (pure: no network, table-tested).

Active Directory keeps times as FILETIME (100 ns since 1601, 0 = never); OpenLDAP's ppolicy overlay keeps them as
generalized time. What a directory does not say is None, and the page says "unknown" — never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from server.directory.client import Raw

EPOCH_AS_FILETIME = 116444736000000000
NEVER = 0x7FFFFFFFFFFFFFFF
UF_ACCOUNTDISABLE = 0x2
UF_DONT_EXPIRE_PASSWD = 0x10000
UF_LOCKOUT = 0x10  # in msDS-User-Account-Control-Computed
LDAP_ADMIN_LOCK = "000001010000Z"  # ppolicy: locked until an administrator unlocks


@dataclass(frozen=True, slots=True)
class Person:
    """One account: who, and the state that matters when they call."""

    dn: str
    login: str
    name: str
    email: str | None
    kind: str
    enabled: bool | None = None  # None: this directory does not say
    locked: bool | None = None
    locked_since: float | None = None
    bad_passwords: int | None = None
    password_set: float | None = None
    must_change: bool | None = None
    password_expires: float | None = None
    password_never_expires: bool = False
    last_logon: float | None = None
    groups: list[str] = field(default_factory=list)  # DNs
    admin_count: bool = False
    primary_group: int | None = None


def first(raw: Raw, name: str) -> str | None:
    """The first value of an attribute, if any."""
    values = raw.get(name.lower())
    return values[0] if values else None


def number(raw: Raw, name: str) -> int | None:
    """An integer attribute, or None."""
    value = first(raw, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def filetime(value: int | None) -> float | None:
    """A FILETIME as a Unix time (None for 0, 'never' and absent)."""
    if value is None or value <= 0 or value >= NEVER:
        return None
    return (value - EPOCH_AS_FILETIME) / 1e7


def generalized(value: str | None) -> float | None:
    """An LDAP generalized time ('20261206221500Z', maybe with fractions) as a Unix time."""
    if not value or value == LDAP_ADMIN_LOCK:
        return None
    digits = value.rstrip("Z").split(".")[0]
    try:
        return datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def common_name(dn: str) -> str:
    """The first RDN's value: 'CN=VPN Users,OU=Groups,...' -> 'VPN Users' (escaped commas kept)."""
    head = dn
    i = 0
    while i < len(dn):
        if dn[i] == "\\":
            i += 2
            continue
        if dn[i] == ",":
            head = dn[:i]
            break
        i += 1
    return head.split("=", 1)[-1].replace("\\,", ",") if "=" in head else dn


def from_ad(dn: str, raw: Raw, max_pwd_age: int | None) -> Person:
    """An Active Directory user (`max_pwd_age`: the domain's maxPwdAge, a negative FILETIME interval)."""
    uac = number(raw, "userAccountControl") or 0
    computed = number(raw, "msDS-User-Account-Control-Computed")
    lockout = filetime(number(raw, "lockoutTime"))
    locked = bool(computed & UF_LOCKOUT) if computed is not None else lockout is not None
    pwd_raw = number(raw, "pwdLastSet")
    never = bool(uac & UF_DONT_EXPIRE_PASSWD)
    expires = None
    computed_expiry = number(raw, "msDS-UserPasswordExpiryTimeComputed")
    if computed_expiry is not None:
        never = never or computed_expiry >= NEVER
        expires = filetime(computed_expiry)
    elif pwd_raw and max_pwd_age and not never:
        expires = filetime(pwd_raw + abs(max_pwd_age))
    logons = [t for t in (filetime(number(raw, "lastLogon")), filetime(number(raw, "lastLogonTimestamp"))) if t]
    return Person(
        dn=dn,
        login=first(raw, "sAMAccountName") or "",
        name=first(raw, "displayName") or first(raw, "cn") or "",
        email=first(raw, "mail") or first(raw, "userPrincipalName"),
        kind="active-directory",
        enabled=not uac & UF_ACCOUNTDISABLE,
        locked=locked,
        locked_since=lockout if locked else None,
        bad_passwords=number(raw, "badPwdCount"),
        password_set=filetime(pwd_raw),
        must_change=pwd_raw == 0 if pwd_raw is not None else None,
        password_expires=None if never or pwd_raw == 0 else expires,
        password_never_expires=never,
        last_logon=max(logons) if logons else None,
        groups=sorted(raw.get("memberof", []), key=str.lower),
        admin_count=number(raw, "adminCount") == 1,
        primary_group=number(raw, "primaryGroupID"),
    )


def from_ldap(dn: str, raw: Raw, groups: list[str]) -> Person:
    """An OpenLDAP user: lock-out and password times only when the ppolicy overlay keeps them."""
    policy = any(k in raw for k in ("pwdchangedtime", "pwdpolicysubentry", "pwdfailuretime", "pwdaccountlockedtime"))
    locked_at = first(raw, "pwdAccountLockedTime")
    reset = first(raw, "pwdReset")
    return Person(
        dn=dn,
        login=first(raw, "uid") or "",
        name=first(raw, "displayName") or first(raw, "cn") or "",
        email=first(raw, "mail"),
        kind="ldap",
        enabled=False if locked_at == LDAP_ADMIN_LOCK else None,
        locked=(locked_at is not None) if policy else None,
        locked_since=generalized(locked_at),
        bad_passwords=len(raw.get("pwdfailuretime", [])) if policy else None,
        password_set=generalized(first(raw, "pwdChangedTime")),
        must_change=(reset == "TRUE") if policy else None,
        last_logon=generalized(first(raw, "authTimestamp")),
        groups=sorted(set(groups) | set(raw.get("memberof", [])), key=str.lower),
    )
