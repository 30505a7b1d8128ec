"""Directory accounts, shared by the JSON API and the pages: search people, show one, run a catalog action on one.

Callers hold the `directory` grant (the routes check it). A search is throttled per user; every person shown and
every action is audited; protected accounts (administrators, the bind account, the deny-list) are refused before
anything is changed; after a change the account is read again and the answer says whether it took.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypedDict

from server.directory import account
from server.directory.account import Person
from server.directory.catalog import CATALOG, group_choices, passphrase, verdict, why_not
from server.directory.client import Client, DirectoryError, Raw, Refused
from server.directory.config import DirectorySpec
from server.runtime import Services
from server.services import directories
from server.services.errors import NotFound, ServiceError
from server.store import accounts

log = logging.getLogger("pocketnoc.directory")
MIN_QUERY = 2
MAX_QUERY = 64
ADMIN_RIDS = (512, 519)  # Domain Admins, Enterprise Admins (as a primary group or by SID)
BUILTIN_ADMINISTRATORS = "S-1-5-32-544"


class Unreachable(ServiceError):
    """The directory did not answer or refused pocketnoc's own bind."""

    status = 502


class ActionChoice(TypedDict):
    """A catalog action as offered for one person: whether it applies now, why not, the groups it can use."""

    id: str
    label: str
    available: bool
    why: str | None
    groups: list[str]


class PersonBrief(TypedDict):
    """A search result."""

    login: str
    name: str
    email: str | None
    dn: str
    enabled: bool | None
    locked: bool | None


class PersonJson(TypedDict):
    """A person as the API shows them (times as ISO UTC strings)."""

    directory: str
    dn: str
    login: str
    name: str
    email: str | None
    kind: str
    enabled: bool | None
    locked: bool | None
    locked_since: str | None
    bad_passwords: int | None
    password_set: str | None
    must_change: bool | None
    password_expires: str | None
    password_never_expires: bool
    last_logon: str | None
    groups: list[dict[str, str]]
    protected: str | None
    actions: list[ActionChoice]


@dataclass(frozen=True, slots=True)
class PersonView:
    """A person as the page and the API show them: the account, whether it is protected, what can be done."""

    directory: str
    person: Person
    protected: str | None
    actions: list[ActionChoice]
    groups: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: whether it took (read back), in words, and a generated password to show once."""

    action: str
    login: str
    took: bool
    summary: str
    person: PersonView
    password: str | None = None


def _audit(svc: Services, user: accounts.User, ip: str, action: str, target: str, detail: dict[str, Any]) -> None:
    with svc.engine.begin() as conn:
        accounts.write_audit(conn, user, action, target, detail, ip)


def search(svc: Services, user: accounts.User, ip: str, name: str, text: str) -> list[PersonBrief]:
    """People whose login, e-mail or name starts with `text` (a literal: `*)(` finds only those characters)."""
    spec, client = directories.load(svc, name)  # an unknown directory is a 404, whatever the text
    text = text.strip()
    if len(text) < MIN_QUERY:
        return []
    if len(text) > MAX_QUERY:
        raise ServiceError(f"search for at most {MAX_QUERY} characters", 422)
    directories.throttle(svc, user.id)
    try:
        with client.session() as c:
            found = c.search_people(text, spec.search_limit)
    except DirectoryError as exc:
        raise Unreachable(str(exc)) from None
    people = [_brief(spec, dn, raw) for dn, raw in found]
    _audit(svc, user, ip, "directory.search", name, {"query": text, "results": len(people)})
    return people


def _brief(spec: DirectorySpec, dn: str, raw: Raw) -> PersonBrief:
    person = account.from_ad(dn, raw, None) if spec.kind == "active-directory" else account.from_ldap(dn, raw, [])
    return {"login": person.login, "name": person.name, "email": person.email, "dn": dn,
            "enabled": person.enabled, "locked": person.locked}


def _read(spec: DirectorySpec, c: Client, login: str) -> tuple[Person, str | None]:
    """The account and, if it is protected, why."""
    found = c.find_person(login)
    if found is None:
        raise NotFound(f"nobody with the login {login!r} in directory {spec.name}")
    dn, raw = found
    if spec.kind == "active-directory":
        _domain_dn, sid, policy = c.domain()
        person = account.from_ad(dn, raw, account.number(policy, "maxPwdAge"))
        sids = [BUILTIN_ADMINISTRATORS] + ([f"{sid}-{rid}" for rid in ADMIN_RIDS] if sid else [])
        guarded = c.find_groups_by_sid(sids) + list(spec.protected_groups)
        in_admins = c.member_in_chain(dn, guarded)
    else:
        person = account.from_ldap(dn, raw, c.groups_with_member(dn))
        member = {g.lower() for g in person.groups}
        in_admins = any(g.lower() in member for g in spec.protected_groups)
    return person, _protection(spec, person, in_admins)


def _protection(spec: DirectorySpec, person: Person, in_admins: bool) -> str | None:
    denied = {d.lower() for d in spec.deny}
    if person.dn.lower() == spec.bind_dn.lower():
        return "it is the account pocketnoc binds with"
    if person.login.lower() in denied or person.dn.lower() in denied:
        return "it is on this directory's deny-list"
    if person.admin_count or (person.primary_group in ADMIN_RIDS):
        return "it is an administrative account (adminCount=1 or an admin primary group)"
    if in_admins:
        return "it is a member of an administrators' group (Domain Admins, Enterprise Admins, Administrators or protected)"
    return None


def _view(spec: DirectorySpec, person: Person, protected: str | None) -> PersonView:
    actions: list[ActionChoice] = []
    for action in CATALOG.values():
        if person.kind not in action.kinds:
            continue
        why = f"protected: {protected}" if protected else why_not(action, person, spec.groups)
        choices = group_choices(action, person, spec.groups) if action.needs_group else []
        actions.append({"id": action.id, "label": action.label, "available": why is None, "why": why, "groups": choices})
    groups = [{"dn": g, "name": account.common_name(g)} for g in person.groups]
    return PersonView(spec.name, person, protected, actions, groups)


def person(svc: Services, user: accounts.User, ip: str, name: str, login: str) -> PersonView:
    """One person's account state (audited: who looked at whom)."""
    spec, client = directories.load(svc, name)
    try:
        with client.session() as c:
            found, protected = _read(spec, c, login)
    except DirectoryError as exc:
        raise Unreachable(str(exc)) from None
    _audit(svc, user, ip, "directory.view", f"{name}:{found.login}", {"dn": found.dn})
    return _view(spec, found, protected)


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """A catalog action with its typed parameters (validated by the API and page models)."""

    action: str
    group: str | None = None
    password: str | None = None  # typed by the admin; None: generate a passphrase
    must_change: bool = True


def act(svc: Services, user: accounts.User, ip: str, name: str, login: str, req: ActionRequest) -> Outcome:
    """Run one catalog action on one account, then read it back; refused on protected accounts. Audited either way."""
    entry = CATALOG.get(req.action)
    if entry is None:
        raise NotFound(f"no directory action {req.action!r}")
    spec, client = directories.load(svc, name)
    target = f"{name}:{login}"
    detail: dict[str, Any] = {"group": req.group} if entry.needs_group else {}
    if req.action == "reset-password":
        detail.update(generated=req.password is None, must_change=req.must_change)
    started = directories.now()
    secret, note = None, None
    try:
        with client.session() as c:
            before, protected = _read(spec, c, login)
            target = f"{name}:{before.login}"
            refusal = f"{before.login} is protected: {protected}" if protected else None
            why = why_not(entry, before, spec.groups, req.group if entry.needs_group else None)
            if entry.needs_group and not req.group:
                why = "choose a group from the allow-list"
            refusal = refusal or (f"{entry.label} does not apply: {why}" if why else None)
            if refusal:
                _audit(svc, user, ip, f"directory.{req.action}", target, {**detail, "outcome": "refused", "why": refusal})
                raise ServiceError(refusal, 403 if protected else 409)
            try:
                secret, note = _change(spec, c, before, req)
            except Refused as exc:
                _audit(svc, user, ip, f"directory.{req.action}", target, {**detail, "outcome": "directory refused",
                                                                          "why": exc.args[0]})
                raise ServiceError(f"the directory refused: {exc}", 422) from None
            after, protected = _read(spec, c, before.login)
    except DirectoryError as exc:
        raise Unreachable(str(exc)) from None
    took, summary = verdict(req.action, after, req.group, req.action == "reset-password" and req.must_change, started)
    if note:
        summary += f" (the directory refused 'must change at next logon': {note})"
    _audit(svc, user, ip, f"directory.{req.action}", target, {**detail, "outcome": "took" if took else "did not take",
                                                              "result": summary})
    shown = secret if req.password is None else None
    return Outcome(req.action, after.login, took, summary, _view(spec, after, protected), shown)


def _change(spec: DirectorySpec, c: Client, person: Person, req: ActionRequest) -> tuple[str | None, str | None]:
    """Make the change in the directory: (the new password of a reset, never logged or audited; why the directory
    refused the "must change" flag after the password itself was set — the password is shown all the same)."""
    dn, ad = person.dn, spec.kind == "active-directory"
    if req.action == "unlock":
        c.replace(dn, "lockoutTime", "0") if ad else c.clear_lockout(dn)
    elif req.action in ("enable", "disable"):
        uac = account.number(c.read(dn, ["userAccountControl"]), "userAccountControl") or 512
        flag = account.UF_ACCOUNTDISABLE
        c.replace(dn, "userAccountControl", str(uac | flag if req.action == "disable" else uac & ~flag))
    elif req.action in ("group-add", "group-remove"):
        group = next(g for g in spec.groups if g.lower() == (req.group or "").lower())
        c.member(group, dn, req.action == "group-add")
    else:
        password = req.password or passphrase()
        c.set_password(dn, password)
        try:
            if req.must_change:
                c.replace(dn, "pwdLastSet", "0") if ad else c.replace(dn, "pwdReset", "TRUE", relax=True)
            elif ad:
                c.replace(dn, "pwdLastSet", "-1")  # "now": a typed password counts from this moment
        except Refused as exc:
            return password, str(exc)
        return password, None
    return None, None


def person_json(view: PersonView) -> PersonJson:
    """The JSON of a person (times as ISO UTC strings, as everywhere in the API)."""
    p = view.person
    return {
        "directory": view.directory, "dn": p.dn, "login": p.login, "name": p.name, "email": p.email, "kind": p.kind,
        "enabled": p.enabled, "locked": p.locked, "locked_since": _iso(p.locked_since), "bad_passwords": p.bad_passwords,
        "password_set": _iso(p.password_set), "must_change": p.must_change, "password_expires": _iso(p.password_expires),
        "password_never_expires": p.password_never_expires, "last_logon": _iso(p.last_logon), "groups": view.groups,
        "protected": view.protected, "actions": view.actions,
    }


def _iso(ts: float | None) -> str | None:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts is not None else None
