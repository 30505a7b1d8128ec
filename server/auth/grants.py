"""Named permissions beside the roles: an admin grants `directory` or `terminal` to an operator.

Admins hold every grant implicitly; viewers never hold one; an operator holds what an admin stored for them.
A bearer token acts with its user's grants, never more. Routes require a grant with `require_grant(name)` (or the
aliases below); a caller without it gets `GrantRequired`, a ServiceError the app maps to 403 (JSON) or an error page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from server.auth.access import Forbidden, check_csrf, current_principal
from server.auth.policy import Policy, declare
from server.auth.principal import Principal
from server.auth.stepup import StepUpRequired, is_fresh
from server.runtime import Services, get_services
from server.services.errors import ServiceError

GRANTS: tuple[str, ...] = ("directory", "terminal")
GRANT_ROLE = "operator"  # the least role that may hold a grant
LABELS = {  # what each grant lets an operator do, in words for the users page
    "directory": "Directory accounts (unlock, reset passwords, enable or disable, groups)",
    "terminal": "Terminal (a recorded SSH shell on a server)",
}


class GrantRequired(ServiceError):
    """Signed in with the role, but without the named permission."""

    status = 403

    def __init__(self, name: str) -> None:
        super().__init__(f"this needs the {name} permission; an admin can grant it on the users page")
        self.grant = name


def holds(role: str, stored: frozenset[str], name: str) -> bool:
    """Whether an account with this role and these stored grants holds `name`."""
    if name not in GRANTS:
        raise ValueError(f"unknown grant {name!r}")
    if role == "admin":
        return True
    return role == GRANT_ROLE and name in stored


def has_grant(principal: Principal, name: str) -> bool:
    """True when the caller (a session or a token, acting as its user) holds the named permission."""
    return holds(principal.role, principal.grants, name)


def effective(role: str, stored: frozenset[str]) -> list[str]:
    """The grants an account holds, in GRANTS order (every one for admins, none for viewers)."""
    return [name for name in GRANTS if holds(role, stored, name)]


def require_grant(name: str, fresh: bool = False) -> object:
    """A dependency: at least an operator holding `name` (admins always), CSRF on writes, and step-up when `fresh`."""
    if name not in GRANTS:
        raise ValueError(f"unknown grant {name!r}")

    @declare(Policy(GRANT_ROLE, fresh=fresh, grant=name))
    async def dependency(request: Request, svc: Annotated[Services, Depends(get_services)]) -> Principal:
        principal = await current_principal(request, svc)
        if not principal.can(GRANT_ROLE):
            raise Forbidden(f"this needs the {GRANT_ROLE} role")
        if not has_grant(principal, name):
            raise GrantRequired(name)
        await check_csrf(request, principal)
        if fresh and not is_fresh(principal, svc.settings):
            raise StepUpRequired()
        return principal

    return Depends(dependency)


DirectoryUser = Annotated[Principal, require_grant("directory")]
FreshDirectoryUser = Annotated[Principal, require_grant("directory", fresh=True)]
TerminalUser = Annotated[Principal, require_grant("terminal")]
FreshTerminalUser = Annotated[Principal, require_grant("terminal", fresh=True)]
