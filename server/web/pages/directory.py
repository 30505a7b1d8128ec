"""Directory accounts on the phone (the `directory` grant): search (results as you type, or a plain form), a
person's page, and each catalog action as confirm page -> stepped-up POST -> result read back from the directory."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.convertors import Convertor, register_url_convertor

from server.auth.access import client_ip
from server.auth.grants import DirectoryUser, FreshDirectoryUser
from server.directory.catalog import CATALOG
from server.runtime import Services, get_services
from server.services import directories
from server.services import directory as service
from server.services.errors import NotFound, ServiceError
from server.store.accounts import User
from server.web.pages.common import render

router = APIRouter(include_in_schema=False)
SvcDep = Annotated[Services, Depends(get_services)]
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Login = Annotated[str, Path(min_length=1, max_length=256)]
Query_ = Annotated[str, Query(max_length=200)]


class _ActionConvertor(Convertor[str]):
    """A catalog action's id in a path: `/people/{login:path}/do/{action:dir_action}` matches only a real action, so
    a login holding "/do/" (an OpenLDAP uid may hold "/") still reaches the person page."""

    regex = "|".join(re.escape(a) for a in CATALOG)

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# A login may hold "/", so routes take it as a `path`; the /do/{action} routes come before the person page.
register_url_convertor("dir_action", _ActionConvertor())


@router.get("/directory", response_class=HTMLResponse)
def home(request: Request, svc: SvcDep, _p: DirectoryUser) -> Response:
    """The directories; with one, straight to its search."""
    found = directories.names(svc)
    if len(found) == 1:
        return RedirectResponse(f"/directory/{found[0]['name']}", status_code=303)
    return render(request, "directory.html", directories=found, current=None, q="", people=None, error=None)


@router.get("/directory/{name}", response_class=HTMLResponse)
def search_page(request: Request, svc: SvcDep, p: DirectoryUser, name: Name, q: Query_ = "") -> Response:
    """Search one directory (a plain GET form; the script swaps in results as you type)."""
    found = directories.names(svc)
    if name not in {d["name"] for d in found}:
        raise NotFound(f"no directory named {name!r}")
    people, error, status = _search(svc, p.user, client_ip(request), name, q)
    return render(request, "directory.html", status=status, directories=found, current=name, q=q, people=people, error=error)


@router.get("/directory/{name}/results", response_class=HTMLResponse)
def results(request: Request, svc: SvcDep, p: DirectoryUser, name: Name, q: Query_ = "") -> Response:
    """Only the result list (the fragment the search box fetches as you type)."""
    people, error, status = _search(svc, p.user, client_ip(request), name, q)
    return render(request, "_directory_results.html", status=status, current=name, q=q, people=people, error=error)


def _search(svc: Services, user: User, ip: str, name: str, q: str) -> tuple[list[service.PersonBrief] | None, str | None, int]:
    if not q.strip():
        return None, None, 200
    try:
        return service.search(svc, user, ip, name, q), None, 200
    except ServiceError as exc:
        if isinstance(exc, NotFound):
            raise
        return None, exc.message, exc.status


@router.get("/directory/{name}/people/{login:path}/do/{action:dir_action}", response_class=HTMLResponse)
def confirm_page(
    request: Request, svc: SvcDep, p: FreshDirectoryUser, name: Name, login: Login, action: str,
    group: Annotated[str, Query(max_length=1024)] = "",
) -> Response:
    """What the action will do, and the form that does it (stepped up before it is shown)."""
    entry = CATALOG.get(action)
    if entry is None:
        raise NotFound(f"no directory action {action!r}")
    view = service.person(svc, p.user, client_ip(request), name, login)
    offer = next((a for a in view.actions if a["id"] == action), None)
    if offer is None or not offer["available"]:
        why = offer["why"] if offer else "not available on this kind of directory"
        raise ServiceError(f"{entry.label} does not apply to {view.person.login}: {why}", 409)
    return render(request, "directory_confirm.html", view=view, person=view.person, action=entry, offer=offer, group=group)


@router.post("/directory/{name}/people/{login:path}/do/{action:dir_action}", response_class=HTMLResponse)
def run_action(
    request: Request, svc: SvcDep, p: FreshDirectoryUser, name: Name, login: Login, action: str,
    confirm: Annotated[str, Form(max_length=8)] = "",
    group: Annotated[str, Form(max_length=1024)] = "",
    mode: Annotated[str, Form(pattern="^(generate|typed)$")] = "generate",
    password: Annotated[str, Form(max_length=256)] = "",
    must_change: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """Run the action (confirmed), then show what the directory says now; a generated password is shown once."""
    if CATALOG.get(action) is None:
        raise NotFound(f"no directory action {action!r}")
    if confirm != "yes":
        raise ServiceError("confirm the action on its page first", 409)
    if action == "reset-password" and mode == "typed" and not password:
        raise ServiceError("type the new password, or choose a generated one", 422)
    req = service.ActionRequest(action, group or None, password if mode == "typed" else None, must_change == "on")
    try:
        done = service.act(svc, p.user, client_ip(request), name, login, req)
    except ServiceError as exc:
        if isinstance(exc, NotFound):
            raise
        view = service.person(svc, p.user, client_ip(request), name, login)
        return render(request, "directory_person.html", status=exc.status, view=view, person=view.person, error=exc.message)
    return render(request, "directory_person.html", view=done.person, person=done.person.person, outcome=done)


@router.get("/directory/{name}/people/{login:path}", response_class=HTMLResponse)
def person_page(request: Request, svc: SvcDep, p: DirectoryUser, name: Name, login: Login) -> Response:
    """A person: enabled, locked out, password, last logon, groups, and the actions that apply."""
    return _person(request, svc, p.user, name, login)


def _person(request: Request, svc: Services, user: User, name: str, login: str) -> Response:
    view = service.person(svc, user, client_ip(request), name, login)
    return render(request, "directory_person.html", view=view, person=view.person)
