"""Telling an account's owner about failed sign-ins on their account, at their next sign-in (page banner and API)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from server.store import accounts
from server.store.accounts import FailedSignIns

if TYPE_CHECKING:  # the auth room speaks no SQL: the engine is only a type here
    from server.store.db import Engine

# The home page shows the banner this long after the sign-in; the account page shows it for the whole session.
HOME_PAGE_SECONDS = 24 * 3600.0


def failed_sign_ins(reader: Engine, name: str) -> FailedSignIns:
    """Failures before the latest completed sign-in (since the one before) and since it."""
    with reader.connect() as conn:
        return accounts.failed_sign_ins(conn, name)


class FailedSignInsJson(TypedDict):
    """The API's view of failed sign-ins."""

    before_last_sign_in: int
    since_last_sign_in: int
    last_failed_at: float | None
    last_failed_ip: str | None
    last_sign_in_at: float | None


def as_json(found: FailedSignIns) -> FailedSignInsJson:
    """The API's view of it."""
    return {
        "before_last_sign_in": found.before_last,
        "since_last_sign_in": found.since_last,
        "last_failed_at": found.last_at,
        "last_failed_ip": found.last_ip,
        "last_sign_in_at": found.last_sign_in_at,
    }


def banner(reader: Engine, name: str, path: str, now: float) -> FailedSignIns | None:
    """What the page banner shows on `path`, or None."""
    if path not in ("/", "/account"):
        return None
    found = failed_sign_ins(reader, name)
    if found.before_last == 0:
        return None
    if path == "/" and (found.last_sign_in_at or 0) < now - HOME_PAGE_SECONDS:
        return None
    return found
