"""Who may call a route, declared once on the dependency that enforces it, and readable from the app's route table.

Every route depends on exactly one declared gate: `require(role)` (the Viewer/Operator/Admin aliases), a step-up gate,
the second sign-in step, a sign-in ceremony, or `public(why)`. tests/server/test_security_matrix.py walks app.routes,
fails for a route without a declaration, and calls each route as every kind of caller to check the declaration holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Depends, params
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Policy:
    """The caller a route lets in: at least `role` (None: anyone, `why` names the route's own guard)."""

    role: str | None
    fresh: bool = False  # sessions also need a recent second-factor proof (step-up)
    stages: tuple[str, ...] = ("full",)  # session stages let in ("2fa": the second sign-in step)
    csrf: bool = True  # session callers echo their CSRF token on writes
    grant: str | None = None  # a named permission (server.auth.grants) the caller must also hold
    session: bool = False  # a browser session only: API tokens are refused (managing one's own second factors)
    why: str = ""


_DECLARED: dict[Callable[..., Any], Policy] = {}


def declare(policy: Policy) -> Callable[[F], F]:
    """Mark a dependency as the gate that enforces `policy`."""

    def mark(gate: F) -> F:
        _DECLARED[gate] = policy
        return gate

    return mark


def public(why: str) -> params.Depends:
    """A route anyone may call; `why` says what protects it instead (or why nothing needs to)."""

    async def open_to_all() -> None:
        return None

    _DECLARED[open_to_all] = Policy(role=None, csrf=False, why=why)
    dependency: params.Depends = Depends(open_to_all)
    return dependency


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def policies_of(route: APIRoute) -> set[Policy]:
    """The policies a route's dependencies declare (a well-formed route has exactly one)."""
    return {_DECLARED[call] for call in _calls(route.dependant) if call in _DECLARED}
