"""Directory accounts of kind `ldap` against a real OpenLDAP slapd (StartTLS, ppolicy), and the directories file's
rules: plain LDAP refused unless allowed for a lab, errors with file and line, a certificate that does not verify."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from server.config.settings import Settings
from server.config.yamlsrc import ConfigError
from server.directory.config import DirectoriesConfig, DirectorySpec, load_directories
from tests.peers.slapd import GROUPS_OU, LIMITED_DN, PEOPLE_OU, Slapd, extra_person
from tests.server.conftest import AppEnv, TotpClock, bearer, form_csrf, make_app_env
from tests.server.directory_helpers import act, audit_of, client_of, directory_app, granted, ldap_entry, write_directories
from tests.server.security_helpers import user_with_totp

API = "/api/v1/directories/lab"


@pytest.fixture
def lab(slapd_peer: Slapd, settings: Settings, tmp_path: Path) -> Iterator[AppEnv]:
    """An app whose directories file names the slapd peer as `lab` (StartTLS)."""
    yield from directory_app(settings, tmp_path, ldap_entry(slapd_peer))



def test_plain_ldap_is_refused_unless_allowed_and_errors_name_the_line(slapd_peer: Slapd, tmp_path: Path) -> None:
    plain = ldap_entry(slapd_peer, security="plain")
    path = write_directories(tmp_path / "d.yaml", {"name": "ok", **{k: v for k, v in plain.items() if k != "name"}},
                             {**plain, "name": "ok", "kind": "novell", "ca_file": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError) as caught:
        load_directories(path)
    text = "\n".join(caught.value.problems)
    assert f"{path}:2: directories.0: plain LDAP sends the bind password in the clear" in text
    assert "directories.1.kind" in text and "duplicate directory name 'ok'" in text
    missing = write_directories(tmp_path / "m.yaml", ldap_entry(slapd_peer, ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(ConfigError, match=r"m\.yaml:\d+: directories\.0\.ca_file: not a readable file"):
        load_directories(missing)
    allowed = load_directories(write_directories(tmp_path / "a.yaml", ldap_entry(slapd_peer, security="plain", allow_plain=True)))
    assert allowed.directories[0].warnings() == [
        "directory lab: plain LDAP (allow_plain): the bind password crosses the network in the clear"]


def test_a_lab_may_allow_plain_ldap_with_a_warning(slapd_peer: Slapd, settings: Settings, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = write_directories(tmp_path / "directories.yaml", ldap_entry(slapd_peer, security="plain", allow_plain=True))
    with caplog.at_level(logging.WARNING, logger="pocketnoc.directory"):
        for env in make_app_env(settings.model_copy(update={"directories_file": path})):
            token = granted(env, "olga")
            found = env.client.get(f"{API}/people", params={"q": "carol"}, headers=bearer(token)).json()["items"]
            assert [p["login"] for p in found] == ["carol"]
    assert "plain LDAP (allow_plain)" in caplog.text


def test_people_on_openldap_lock_unlock_reset_and_groups(lab: AppEnv, slapd_peer: Slapd) -> None:
    token = granted(lab, "olga")
    ldap = client_of(lab, "lab")
    carol = lab.client.get(f"{API}/people/carol", headers=bearer(token)).json()
    assert carol["name"] == "Carol Jones" and carol["locked"] is False and carol["bad_passwords"] == 0
    assert [g["name"] for g in carol["groups"]] == ["vpn"] and carol["enabled"] is None  # OpenLDAP has no "disabled"
    assert {a["id"] for a in carol["actions"]} == {"unlock", "reset-password", "group-add", "group-remove"}
    for q in ("c", "carol"):  # an unknown directory is a 404 whatever the text (a short one found nothing, with 200)
        nosuch = lab.client.get("/api/v1/directories/nosuch/people", params={"q": q}, headers=bearer(token))
        assert nosuch.status_code == 404 and "nosuch" in nosuch.text, nosuch.text

    dave = f"uid=dave,{PEOPLE_OU}"
    for _ in range(3):
        assert ldap.try_bind(dave, "wrong") is not None
    locked = lab.client.get(f"{API}/people/dave", headers=bearer(token)).json()
    assert locked["locked"] is True and locked["locked_since"] and locked["bad_passwords"] == 3
    assert ldap.try_bind(dave, slapd_peer.people_password) is not None  # ppolicy: locked even with the right password
    status, done = act(lab, token, "lab", "dave", "unlock")
    assert (status, done["took"], done["result"]) == (200, True, "unlocked — badPwdCount 0")
    assert ldap.try_bind(dave, slapd_peer.people_password) is None

    status, done = act(lab, token, "lab", "carol", "reset-password", password="Typed-pass-42", must_change=False)
    assert status == 200 and done["took"] is True, done
    assert ldap.try_bind(f"uid=carol,{PEOPLE_OU}", "Typed-pass-42") is None
    status, done = act(lab, token, "lab", "carol", "reset-password", must_change=True)
    assert status == 200 and done["result"] == "password set — must change at next logon"
    assert ldap.try_bind(f"uid=carol,{PEOPLE_OU}", str(done["password"])) is None

    status, done = act(lab, token, "lab", "carol", "group-add", group=f"cn=wifi,{GROUPS_OU}")
    assert status == 200 and done["took"] is True
    assert {g["name"] for g in done["person"]["groups"]} == {"vpn", "wifi"}  # type: ignore[index]
    assert act(lab, token, "lab", "carol", "disable")[0] == 409  # OpenLDAP has no account switch: not offered, refused
    assert [e["detail"]["outcome"] for e in audit_of(lab, "directory.unlock")] == ["took"]


def test_protected_groups_and_an_unverified_certificate(lab: AppEnv, slapd_peer: Slapd, settings: Settings,
                                                          tmp_path: Path) -> None:
    token = granted(lab, "olga")
    root2 = lab.client.get(f"{API}/people/root2", headers=bearer(token)).json()
    assert "administrators' group" in root2["protected"]
    assert act(lab, token, "lab", "root2", "reset-password")[0] == 403
    assert lab.client.get(f"{API}/people/nobody", headers=bearer(token)).status_code == 404

    wrong_ca = tmp_path / "other-ca.pem"
    wrong_ca.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    path = write_directories(tmp_path / "w.yaml", ldap_entry(slapd_peer, ca_file=str(wrong_ca)))
    for env in make_app_env(settings.model_copy(update={"directories_file": path, "data_dir": tmp_path / "d2"})):
        other = granted(env, "olga")
        refused = env.client.get(f"{API}/people", params={"q": "carol"}, headers=bearer(other))
        assert refused.status_code == 502 and "certificate verify failed" in refused.json()["detail"]
        page = env.client.get("/directory/lab", params={"q": "carol"}, headers=bearer(other))
        assert page.status_code == 502 and "certificate verify failed" in page.text


def test_the_example_file_explains_every_setting() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "directories.example.yaml"
    text = example.read_text()
    config = DirectoriesConfig.model_validate(yaml.safe_load(text))
    assert [d.name for d in config.directories] == ["corp", "lab"]
    assert [f for f in DirectorySpec.model_fields if f"{f}:" not in text] == []


def test_admins_add_a_directory_on_the_pages_and_its_password_stays_sealed(lab: AppEnv, slapd_peer: Slapd,
                                                                            clock: TotpClock) -> None:
    client, _, _ = user_with_totp(lab, "root", "admin", clock)
    page = client.get("/admin/directories")
    assert page.status_code == 200 and "from the file" in page.text
    form = {**{k: str(v) for k, v in ldap_entry(slapd_peer).items() if isinstance(v, str | int)},
            "name": "lab2", "base_dns": "\n".join(ldap_entry(slapd_peer)["base_dns"]), "verify": "on",
            "csrf_token": form_csrf(page.text)}
    assert client.post("/admin/directories", data=form).status_code == 303
    listed = client.get("/admin/directories").text
    assert "made here" in listed and "stored (sealed)" in listed and slapd_peer.bind_password not in listed
    edit = client.get("/admin/directories/lab2").text
    assert slapd_peer.bind_password not in edit and 'placeholder="stored; leave empty to keep it"' in edit
    kept = client.post("/admin/directories", data={**form, "bind_password": "", "search_limit": "5"})
    assert kept.status_code == 303  # an empty password keeps the stored one
    token = granted(lab, "olga")
    found = lab.client.get("/api/v1/directories/lab2/people", params={"q": "carol"}, headers=bearer(token)).json()
    assert [p["login"] for p in found["items"]] == ["carol"]
    clash = client.post("/admin/directories", data={**form, "name": "lab"})
    assert clash.status_code == 409 and "directories file" in clash.text
    plain = client.post("/admin/directories", data={**form, "security": "plain"})
    assert plain.status_code == 422 and "in the clear" in plain.text
    removed = client.post("/admin/directories/lab2/delete", data={"csrf_token": form_csrf(page.text)})
    assert removed.status_code == 303
    assert [e["action"] for e in audit_of(lab, "directory.")][:3] == ["directory.delete", "directory.search", "directory.config"]
    assert lab.client.get("/admin/directories", headers=bearer(lab.token("vic", "viewer"))).status_code == 403


def test_a_refused_must_change_flag_still_shows_the_new_password(slapd_peer: Slapd, settings: Settings,
                                                                  tmp_path: Path) -> None:
    entry = ldap_entry(slapd_peer, name="lab", bind_dn=LIMITED_DN)  # may set passwords, not ppolicy's pwdReset
    for env in directory_app(settings, tmp_path, entry):
        token = granted(env, "olga")
        status, done = act(env, token, "lab", "erin", "reset-password", must_change=True)
        assert status == 200, done
        assert done["result"].startswith("password set, but not marked 'must change' (the directory refused")
        assert done["took"] is False and done["password"]  # the password did change: it is shown, not lost
        assert client_of(env, "lab").try_bind(f"uid=erin,{PEOPLE_OU}", done["password"]) is None
        assert audit_of(env, "directory.reset-password")[0]["detail"]["outcome"] == "did not take"


def test_the_admin_api_takes_a_password_but_never_a_server_path(lab: AppEnv, slapd_peer: Slapd) -> None:
    admin = lab.token("root", "admin")
    body = {k: v for k, v in ldap_entry(slapd_peer).items() if k != "name"}
    made = lab.client.put("/api/v1/admin/directories/lab3", json=body, headers=bearer(admin))
    assert made.status_code == 200 and made.json()["bind_password_set"] is True
    assert slapd_peer.bind_password not in made.text
    for bad in ({**body, "owner": "me"}, {**body, "bind_password_file": "/etc/shadow"}):
        assert lab.client.put("/api/v1/admin/directories/lab3", json=bad, headers=bearer(admin)).status_code == 422
    assert lab.client.delete("/api/v1/admin/directories/lab3", headers=bearer(admin)).status_code == 204
    assert lab.client.delete("/api/v1/admin/directories/lab", headers=bearer(admin)).status_code == 409  # the file's


def test_a_login_with_slash_hash_percent_question_mark_and_spaces(lab: AppEnv, slapd_peer: Slapd) -> None:
    login = "ops/do/night #2 50%?"  # "/" splits a path, "#" and "?" end it, "%" escapes; "/do/" looks like an action
    token = granted(lab, "olga")
    with extra_person(slapd_peer, login, "Nina Night") as dn:
        found = lab.client.get(f"{API}/people", params={"q": "ops/do"}, headers=bearer(token)).json()["items"]
        assert [p["login"] for p in found] == [login]
        encoded = quote(login, safe="")
        for path in (encoded, "ops/do/night%20%232%2050%25%3F"):  # "/" escaped or not: the same person
            person = lab.client.get(f"{API}/people/{path}", headers=bearer(token))
            assert person.status_code == 200, person.text
            assert (person.json()["login"], person.json()["name"]) == (login, "Nina Night")

        results = lab.client.get("/directory/lab", params={"q": "ops/do"}, headers=bearer(token)).text
        href = f"/directory/lab/people/{encoded}"
        assert f'href="{href}"' in results
        page = lab.client.get(href, headers=bearer(token))
        assert page.status_code == 200 and "Nina Night" in page.text and "not locked" in page.text

        ldap = client_of(lab, "lab")
        for _ in range(3):
            assert ldap.try_bind(dn, "wrong") is not None
        page = lab.client.get(href, headers=bearer(token)).text
        assert f'href="{href}/do/unlock"' in page
        confirm = lab.client.get(f"{href}/do/unlock", headers=bearer(token))
        assert confirm.status_code == 200 and f'action="{href}/do/unlock"' in confirm.text
        done = lab.client.post(f"{href}/do/unlock", data={"confirm": "yes"}, headers=bearer(token))
        assert done.status_code == 200 and "unlocked — badPwdCount 0" in done.text
        assert ldap.try_bind(dn, slapd_peer.people_password) is None
        status, answer = act(lab, token, "lab", encoded, "reset-password", password="Typed-pass-43", must_change=False)
        assert status == 200 and answer["login"] == login and answer["took"] is True, answer
        assert [e["target"] for e in audit_of(lab, "directory.")][:2] == [f"lab:{login}"] * 2
    assert lab.client.get(f"{href}/do/bogus", headers=bearer(token)).status_code == 404
