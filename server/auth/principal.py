"""The one principal: who is calling and how, built in one place from a session or a bearer token.

Every identity-keyed use (audit, runs, second factors, sessions, push subscriptions) reads `user_id` from here;
nothing else turns a joined database row into an identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from server.store import accounts, grants, sessions
from server.store.accounts import ROLES, TokenOwner, User
from server.store.sessions import SessionInfo

if TYPE_CHECKING:  # the auth room speaks no SQL: the connection is only a type here
    from server.store.db import Connection

AuthKind = Literal["session", "token"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in caller: the account (id, name, role) and the credential it came with."""

    user_id: int
    name: str
    role: str
    kind: AuthKind
    session_id: str | None = None  # stored (digest) id of the session, for session callers
    token_id: int | None = None  # api_tokens row, for bearer callers
    token_hash: str | None = None  # digest of the bearer token, to re-check it on long streams
    csrf: str | None = None  # sessions echo this on writes; bearer tokens need none
    stage: str = sessions.FULL
    verified_at: float | None = None
    grants: frozenset[str] = frozenset()  # named permissions stored for the account (server.auth.grants decides)

    @property
    def user(self) -> User:
        """The account as a store record (for audit entries and services)."""
        return User(self.user_id, self.name, self.role)

    def can(self, role: str) -> bool:
        """True when this caller's role is at least `role`."""
        return ROLES.index(self.role) >= ROLES.index(role)


def from_session(found: SessionInfo, held: frozenset[str] = frozenset()) -> Principal:
    """The principal of a live session (`held`: the account's stored grants)."""
    user = found.user
    return Principal(
        user_id=user.id,
        name=user.name,
        role=user.role,
        kind="session",
        session_id=found.id,
        csrf=found.csrf,
        stage=found.stage,
        verified_at=found.verified_at,
        grants=held,
    )


def from_token(found: TokenOwner, token_hash: str, held: frozenset[str] = frozenset()) -> Principal:
    """The principal of a valid bearer token: the token's owner (and the owner's grants, never more)."""
    return Principal(
        user_id=found.user.id,
        name=found.user.name,
        role=found.user.role,
        kind="token",
        token_id=found.token_id,
        token_hash=token_hash,
        grants=held,
    )


def resolve(
    conn: Connection, authorization: str, cookie: str | None, idle: float, absolute: float,
    seen: dict[str, float] | None = None,
) -> Principal | None:
    """The caller from an Authorization header (bearer) or else the session cookie; None when neither is valid.

    `seen` (session touches kept in memory while the disk is full) makes the lookup read only.
    """
    touch = seen is None
    if authorization[:7].lower() == "bearer ":
        token = authorization[7:].strip()
        owner = accounts.find_token(conn, token, touch)
        return from_token(owner, accounts.digest(token), grants.of_user(conn, owner.user.id)) if owner else None
    if cookie:
        found = sessions.load(conn, cookie, idle, absolute, touch, seen)
        return from_session(found, grants.of_user(conn, found.user.id)) if found else None
    return None
