"""The pure parts of directory accounts, row by row: reading AD and ppolicy attributes, when an action applies, and
the verdict after it ran."""

from __future__ import annotations

import pytest

from server.directory import account
from server.directory.account import Person
from server.directory.catalog import CATALOG, passphrase, verdict, why_not
from server.directory.client import words

DAY = 86400 * 10**7  # a day in FILETIME units
T0 = 1_765_000_000.0  # a Unix time
FT0 = int(T0 * 10**7) + account.EPOCH_AS_FILETIME


def ad(**raw: object) -> Person:
    return account.from_ad("CN=x,DC=t", {k.lower(): [str(v)] for k, v in raw.items()}, -42 * DAY)


def test_active_directory_attributes() -> None:
    # attributes -> (enabled, locked, locked_since, must_change, password_set, expires, never)
    rows = [
        ({"userAccountControl": 512, "pwdLastSet": FT0}, (True, False, None, False, T0, T0 + 42 * 86400, False)),
        ({"userAccountControl": 514, "pwdLastSet": 0}, (False, False, None, True, None, None, False)),
        ({"userAccountControl": 512 | 0x10000, "pwdLastSet": FT0}, (True, False, None, False, T0, None, True)),
        ({"userAccountControl": 512, "msDS-User-Account-Control-Computed": 16, "lockoutTime": FT0, "pwdLastSet": FT0},
         (True, True, T0, False, T0, T0 + 42 * 86400, False)),
        # lockoutTime left behind after the lock-out window passed: the computed flag says it is over
        ({"userAccountControl": 512, "msDS-User-Account-Control-Computed": 0, "lockoutTime": FT0, "pwdLastSet": FT0},
         (True, False, None, False, T0, T0 + 42 * 86400, False)),
        ({"userAccountControl": 512, "pwdLastSet": FT0, "msDS-UserPasswordExpiryTimeComputed": account.NEVER},
         (True, False, None, False, T0, None, True)),
    ]
    for raw, want in rows:
        p = ad(**raw)
        assert (p.enabled, p.locked, p.locked_since, p.must_change, p.password_set, p.password_expires,
                p.password_never_expires) == want, raw


def test_last_logon_is_the_later_of_the_two_and_zero_is_never() -> None:
    assert ad(lastLogon=FT0, lastLogonTimestamp=FT0 - DAY).last_logon == T0
    assert ad(lastLogon=0, lastLogonTimestamp=0).last_logon is None


def test_openldap_without_ppolicy_says_unknown() -> None:
    bare = account.from_ldap("uid=a,dc=t", {"uid": ["a"], "cn": ["A B"]}, [])
    assert (bare.locked, bare.bad_passwords, bare.must_change, bare.enabled) == (None, None, None, None)
    raw = {"uid": ["a"], "pwdchangedtime": ["20261206221500Z"], "pwdaccountlockedtime": ["20261206221600Z"],
           "pwdfailuretime": ["20261206221559.1Z", "20261206221600.2Z"], "pwdreset": ["TRUE"]}
    locked = account.from_ldap("uid=a,dc=t", raw, ["cn=g,dc=t"])
    assert locked.locked is True and locked.bad_passwords == 2 and locked.must_change is True
    assert locked.locked_since == account.generalized("20261206221600Z") and locked.groups == ["cn=g,dc=t"]
    admin_lock = account.from_ldap("uid=a,dc=t", {**raw, "pwdaccountlockedtime": [account.LDAP_ADMIN_LOCK]}, [])
    assert admin_lock.enabled is False and admin_lock.locked_since is None


@pytest.mark.parametrize(("dn", "name"), [("CN=VPN Users,OU=G,DC=t", "VPN Users"), (r"CN=Smith\, Jo,OU=P", "Smith, Jo")])
def test_common_names(dn: str, name: str) -> None:
    assert account.common_name(dn) == name


def test_when_actions_apply() -> None:
    groups = ["CN=VPN,DC=t", "CN=Wifi,DC=t"]
    locked = Person("CN=x", "x", "X", None, "active-directory", enabled=True, locked=True, groups=["CN=VPN,DC=t"])
    assert why_not(CATALOG["unlock"], locked, groups) is None
    assert why_not(CATALOG["enable"], locked, groups) == "the account is enabled"
    assert why_not(CATALOG["group-add"], locked, groups, "cn=vpn,dc=t") == "already a member"
    not_allowed = why_not(CATALOG["group-add"], locked, groups, "CN=Domain Admins,DC=t")
    assert not_allowed == "that group is not on this directory's allow-list"
    assert why_not(CATALOG["group-remove"], locked, groups, "CN=VPN,DC=t") is None
    assert why_not(CATALOG["group-add"], locked, []) == "no groups are allowed for this directory (setting groups)"
    ldap = Person("uid=x", "x", "X", None, "ldap", locked=None)
    assert why_not(CATALOG["disable"], ldap, groups) == "not available on this kind of directory"
    assert why_not(CATALOG["unlock"], ldap, groups) == "this directory does not say it is locked"


def test_verdicts_after_an_action() -> None:
    after = Person("CN=x", "x", "X", None, "active-directory", enabled=False, locked=False, bad_passwords=0,
                   must_change=True, password_set=None, groups=["CN=VPN,DC=t"])
    assert verdict("unlock", after, None, False, T0) == (True, "unlocked — badPwdCount 0")
    assert verdict("disable", after, None, False, T0) == (True, "disabled")
    assert verdict("enable", after, None, False, T0) == (False, "still disabled")
    assert verdict("group-add", after, "CN=VPN,DC=t", False, T0) == (True, "now a member of CN=VPN,DC=t")
    assert verdict("group-remove", after, "CN=VPN,DC=t", False, T0) == (False, "still a member of CN=VPN,DC=t")
    assert verdict("reset-password", after, None, True, T0) == (True, "password set — must change at next logon")
    old = Person("CN=x", "x", "X", None, "active-directory", password_set=T0 - 3600)
    assert verdict("reset-password", old, None, False, T0) == (False, "the password change time did not move")


def test_passphrases_and_directory_words() -> None:
    made = {passphrase() for _ in range(50)}
    assert len(made) == 50
    for phrase in made:
        parts = phrase.split("-")
        assert len(parts) == 6 and parts[0][0].isupper() and parts[-1].isdigit()
    assert words("0000052D: Constraint violation - check_password_restrictions: too short\x00") == (
        "Constraint violation - check_password_restrictions: too short")
    assert words("invalid credentials") == "invalid credentials"
