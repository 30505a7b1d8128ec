"""Directory accounts against a real Samba Active Directory DC (LDAPS, its own certificate): lock-out by bad binds
and unlock, password resets that really bind, enable/disable, allow-listed groups, protected accounts, searches that
take `*)(` literally, and callers without the grant refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config.settings import Settings
from tests.peers.samba_dc import USERS, SambaDC
from tests.server.conftest import DIRECTORY_PASSWORD, AppEnv, bearer
from tests.server.directory_helpers import VPN, WIFI, act, ad_entry, audit_of, client_of, directory_app, granted

API = "/api/v1/directories/corp"


@pytest.fixture
def corp(samba_dc: SambaDC, settings: Settings, tmp_path: Path) -> Iterator[AppEnv]:
    """An app whose directories file names the Samba DC as `corp`."""
    yield from directory_app(settings, tmp_path, ad_entry(samba_dc))



def test_a_locked_out_person_is_seen_and_unlocked(corp: AppEnv) -> None:
    token = granted(corp, "olga")
    ldap = client_of(corp, "corp")
    dn = f"CN=jbloggs,{USERS}"
    for _ in range(3):
        assert ldap.try_bind(dn, "wrong password") is not None
    assert "775" in (ldap.try_bind(dn, DIRECTORY_PASSWORD) or "")  # AD: account locked, even with the right password

    person = corp.client.get(f"{API}/people/jbloggs", headers=bearer(token)).json()
    assert person["locked"] is True and person["bad_passwords"] == 3 and person["locked_since"].endswith("Z")
    assert person["enabled"] is True and person["protected"] is None and person["name"] == "Jo Bloggs"
    unlock = next(a for a in person["actions"] if a["id"] == "unlock")
    assert unlock["available"] is True
    page = corp.client.get("/directory/corp/people/jbloggs", headers=bearer(token))
    assert page.status_code == 200 and "locked</span> since" in page.text and "badPwdCount 3" in page.text

    status, done = act(corp, token, "corp", "jbloggs", "unlock")
    assert status == 200, done
    assert done["took"] is True and done["result"] == "unlocked — badPwdCount 0"
    assert ldap.try_bind(dn, DIRECTORY_PASSWORD) is None  # the person can sign in again
    again = act(corp, token, "corp", "jbloggs", "unlock")
    assert again[0] == 409 and "not locked" in str(again[1]["detail"])
    entry = audit_of(corp, "directory.unlock")[1]  # the newest is the refused second try
    assert entry["target"] == "corp:jbloggs" and entry["detail"]["outcome"] == "took" and entry["username"] == "olga"


def test_password_resets_bind_and_policy_refusals_are_shown_in_words(corp: AppEnv) -> None:
    token = granted(corp, "olga")
    ldap = client_of(corp, "corp")
    dn = f"CN=asmith,{USERS}"
    status, done = act(corp, token, "corp", "asmith", "reset-password")
    assert status == 200 and done["took"] is True, done
    assert done["result"] == "password set — must change at next logon"
    generated = str(done["password"])
    assert len(generated.split("-")) == 6
    assert "773" in (ldap.try_bind(dn, generated) or "")  # AD: right password, must change it first

    status, refused = act(corp, token, "corp", "asmith", "reset-password", password="short", must_change=False)
    assert status == 422 and "the password is too short" in str(refused["detail"])
    typed = "Typed-Pass-" + generated[-3:] + "x!"
    status, done = act(corp, token, "corp", "asmith", "reset-password", password=typed, must_change=False)
    assert status == 200 and done["took"] is True and "password" not in done
    assert ldap.try_bind(dn, typed) is None
    log = audit_of(corp, "directory.reset-password")
    assert [e["detail"]["outcome"] for e in log] == ["took", "directory refused", "took"]
    assert not any(generated in str(e) or typed in str(e) for e in log)  # passwords never reach the audit log


def test_disable_enable_and_allow_listed_groups(corp: AppEnv) -> None:
    token = granted(corp, "olga")
    ldap = client_of(corp, "corp")
    dn = f"CN=bjones,{USERS}"
    status, done = act(corp, token, "corp", "bjones", "disable")
    assert (status, done["took"], done["result"]) == (200, True, "disabled")
    assert "533" in (ldap.try_bind(dn, DIRECTORY_PASSWORD) or "")  # AD: account disabled
    status, done = act(corp, token, "corp", "bjones", "enable")
    assert (status, done["result"]) == (200, "enabled")
    assert ldap.try_bind(dn, DIRECTORY_PASSWORD) is None

    status, done = act(corp, token, "corp", "bjones", "group-add", group=WIFI)
    assert status == 200 and done["result"] == "now a member of CN=Wifi Guests,CN=Users,DC=pocket,DC=test"
    status, done = act(corp, token, "corp", "bjones", "group-remove", group=VPN)
    assert status == 200 and done["took"] is True
    groups = {g["name"] for g in done["person"]["groups"]}  # type: ignore[index]
    assert "Wifi Guests" in groups and "VPN Users" not in groups
    status, refused = act(corp, token, "corp", "bjones", "group-add", group=f"CN=Domain Admins,{USERS}")
    assert status == 409 and "allow-list" in str(refused["detail"])


def test_protected_accounts_cannot_be_touched(corp: AppEnv) -> None:
    token = granted(corp, "olga")
    reasons = {
        "eve": "administrators' group",  # in Helpdesk Admins, which is nested in Domain Admins
        "Administrator": "administrative account",
        "svc-pocketnoc": "binds with",
        "starp": "deny-list",
    }
    for login, why in reasons.items():
        person = corp.client.get(f"{API}/people/{login}", headers=bearer(token)).json()
        assert why in str(person["protected"]), (login, person["protected"])
        assert not any(a["available"] for a in person["actions"])
        status, refused = act(corp, token, "corp", login, "reset-password")
        assert status == 403 and "protected" in str(refused["detail"]), login
    assert all(e["detail"]["outcome"] == "refused" for e in audit_of(corp, "directory.reset-password"))


def test_search_is_literal_bounded_and_only_for_the_grant(corp: AppEnv) -> None:
    token = granted(corp, "olga")
    found = corp.client.get(f"{API}/people", params={"q": "*)("}, headers=bearer(token)).json()["items"]
    assert [p["login"] for p in found] == ["starp"]  # "*)( Star Person": the filter characters were searched for
    assert corp.client.get(f"{API}/people", params={"q": "*"}, headers=bearer(token)).json()["items"] == []
    jo = corp.client.get(f"{API}/people", params={"q": "Jo Blo"}, headers=bearer(token)).json()["items"]
    assert [p["login"] for p in jo] == ["jbloggs"]
    bounded = corp.client.get(f"{API}/people", params={"q": "Ja"}, headers=bearer(token)).json()["items"]
    assert len(bounded) == 2  # Jane, Janet and Jack match; search_limit is 2
    assert corp.client.get(f"{API}/people", params={"q": "x" * 65}, headers=bearer(token)).status_code == 422
    assert corp.client.get(f"{API}/people/*)(", headers=bearer(token)).status_code == 404  # a login taken literally too
    page = corp.client.get("/directory/corp", params={"q": "*)("}, headers=bearer(token))
    assert page.status_code == 200 and "*)( Star Person" in page.text and 'href="/directory/corp/people/starp"' in page.text

    viewer = corp.token("vic", "viewer")
    plain_operator = corp.token("otto", "operator")
    for who in (viewer, plain_operator):
        assert corp.client.get(f"{API}/people", params={"q": "jo"}, headers=bearer(who)).status_code == 403
        assert corp.client.get("/directory/corp/people/jbloggs", headers=bearer(who)).status_code == 403
        assert act(corp, who, "corp", "jbloggs", "unlock")[0] == 403
    assert "/directory" not in corp.client.get("/", headers=bearer(viewer)).text


def test_searches_are_throttled_per_person(corp: AppEnv) -> None:
    token = granted(corp, "olga")
    other = granted(corp, "omar")
    corp.svc.clock = lambda: 1000.0  # the clock stands still: no token comes back
    answers = [corp.client.get(f"{API}/people", params={"q": "zz"}, headers=bearer(token)).status_code for _ in range(11)]
    assert answers == [200] * 10 + [429]
    assert corp.client.get(f"{API}/people", params={"q": "zz"}, headers=bearer(other)).status_code == 200
    corp.svc.clock = lambda: 1001.0  # a second later: four more
    assert corp.client.get(f"{API}/people", params={"q": "zz"}, headers=bearer(token)).status_code == 200


def test_the_bind_password_is_sealed_and_never_shown(corp: AppEnv, samba_dc: SambaDC) -> None:
    admin = corp.token("root", "admin")
    listed = corp.client.get("/api/v1/admin/directories", headers=bearer(admin))
    assert listed.status_code == 200 and listed.json()["items"][0]["bind_password_set"] is True
    assert samba_dc.bind_password not in listed.text
    from server.store import directories as rows

    with corp.svc.reader.connect() as conn:
        row = rows.get_row(conn, "corp")
    assert row is not None and row.secret is not None and samba_dc.bind_password.encode() not in row.secret
    assert samba_dc.bind_password not in str(row.spec)
