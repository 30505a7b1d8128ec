"""User and credential changes shared by pages and API: each one audited, each one ending sessions where due."""

from __future__ import annotations

from typing import Any, TypedDict

from server.auth import passwords
from server.auth.grants import GRANT_ROLE, GRANTS, effective
from server.auth.passwords import UserError, check_password, create_user, hash_password
from server.store import accounts, grants, sessions, twofactor
from server.store import users as user_rows
from server.store.accounts import ROLES, User
from server.store.db import Connection


def password_matches(conn: Connection, user_id: int, password: str) -> bool:
    """Check a user's current password (for step-up and password changes)."""
    stored = user_rows.password_hash(conn, user_id)
    return passwords.matches(stored, password) if stored else False


class UserView(TypedDict):
    """A user as admins see them (never secrets)."""

    id: int
    name: str
    role: str
    disabled: bool
    grants: list[str]
    totp: bool
    passkeys: int
    recovery_codes_left: int
    sessions: int


def describe(conn: Connection, user: User) -> UserView:
    """A user as admins see them: role, state and which second factors they have (never secrets)."""
    have = twofactor.factors(conn, user.id)
    return {
        "id": user.id,
        "name": user.name,
        "role": user.role,
        "disabled": user.disabled,
        "grants": effective(user.role, grants.of_user(conn, user.id)),
        "totp": have.totp,
        "passkeys": have.passkeys,
        "recovery_codes_left": have.recovery_left,
        "sessions": len(sessions.list_for_user(conn, user.id)),
    }


def add_user(conn: Connection, actor: User | None, ip: str, name: str, role: str, password: str) -> int:
    """Create a user (validated) and audit it."""
    user_id = create_user(conn, name, role, password)
    accounts.write_audit(conn, actor, "user.create", name, {"role": role}, ip)
    return user_id


def _target(conn: Connection, user_id: int) -> User:
    found = accounts.get_user(conn, user_id)
    if found is None:
        raise LookupError("no such user")
    return found


def set_role(conn: Connection, actor: User, ip: str, user_id: int, role: str) -> User:
    """Change a user's role; an admin cannot demote themselves or the last admin. Ends the user's sessions."""
    target = _target(conn, user_id)
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if role == target.role:
        return target
    if target.id == actor.id:
        raise UserError("you cannot change your own role; ask another admin")
    if target.role == "admin" and not target.disabled and user_rows.enabled_admins(conn) <= 1:
        raise UserError("this is the last admin; make another admin first")
    user_rows.set_role(conn, user_id, role)
    sessions.end_for_user(conn, user_id)
    detail: dict[str, Any] = {"from": target.role, "to": role}
    if role == "viewer":  # viewers hold no grants: demotion drops them (a later promotion starts from none)
        dropped = sorted(grants.of_user(conn, user_id))
        grants.remove(conn, user_id)
        if dropped:
            detail["grants_dropped"] = dropped
    accounts.write_audit(conn, actor, "user.role", target.name, detail, ip)
    return User(target.id, target.name, role, target.disabled)


def set_disabled(conn: Connection, actor: User, ip: str, user_id: int, disabled: bool) -> User:
    """Disable (ending every session at once) or enable a user; nobody disables themselves or the last admin."""
    target = _target(conn, user_id)
    if disabled == target.disabled:
        return target
    if disabled and target.id == actor.id:
        raise UserError("you cannot disable yourself")
    if disabled and target.role == "admin" and user_rows.enabled_admins(conn) <= 1:
        raise UserError("this is the last admin; make another admin first")
    user_rows.set_disabled(conn, user_id, disabled)
    ended = sessions.end_for_user(conn, user_id) if disabled else 0
    accounts.write_audit(conn, actor, "user.disable" if disabled else "user.enable", target.name, {"sessions_ended": ended}, ip)
    return User(target.id, target.name, target.role, disabled)


def set_grants(conn: Connection, actor: User, ip: str, user_id: int, wanted: list[str]) -> User:
    """Make a user's stored grants exactly `wanted`: each one added is audited as user.grant, each one taken as
    user.revoke. Viewers cannot hold any; admins hold every one whatever is stored."""
    target = _target(conn, user_id)
    unknown = sorted(set(wanted) - set(GRANTS))
    if unknown:
        raise UserError(f"unknown permission {unknown[0]!r}; the permissions are {', '.join(GRANTS)}")
    now = grants.of_user(conn, user_id)
    added, taken = sorted(set(wanted) - now), sorted(now - set(wanted))
    if added and target.role != GRANT_ROLE:
        what = "an admin and holds them all" if target.role == "admin" else "a viewer"
        raise UserError(f"permissions are granted to operators; {target.name} is {what}")
    grants.add(conn, user_id, added, actor.name)
    grants.remove(conn, user_id, taken)
    for name in added:
        accounts.write_audit(conn, actor, "user.grant", target.name, {"grant": name}, ip)
    for name in taken:
        accounts.write_audit(conn, actor, "user.revoke", target.name, {"grant": name}, ip)
    return target


def reset_2fa(conn: Connection, actor: User, ip: str, user_id: int, keep_session: str | None = None) -> User:
    """Remove every second factor of a user and end their sessions everywhere (but `keep_session`)."""
    target = _target(conn, user_id)
    twofactor.clear_factors(conn, user_id)
    ended = sessions.end_for_user(conn, user_id, keep=keep_session)
    accounts.write_audit(conn, actor, "2fa.reset", target.name, {"sessions_ended": ended}, ip)
    return target


class WrongPassword(UserError):
    """The current password given to change it was wrong (the caller counts it as a wrong step-up proof)."""


def change_password(conn: Connection, user: User, ip: str, current: str, new: str) -> None:
    """Change one's own password (the current one must be right); ends the user's sessions on every device."""
    if not password_matches(conn, user.id, current):
        raise WrongPassword("the current password is wrong")
    check_password(new)
    if current == new:
        raise UserError("the new password is the same as the old one")
    accounts.set_password_hash(conn, user.id, hash_password(new))  # also ends every session
    accounts.write_audit(conn, user, "user.password", user.name, {"via": "self"}, ip)
