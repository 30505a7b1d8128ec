"""JSON API of directory accounts (the `directory` grant): search people, one person, catalog actions (stepped up,
confirmed, audited); and the directories themselves for admins (the bind password is write-only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from server.auth.access import Admin, client_ip
from server.auth.grants import DirectoryUser, FreshDirectoryUser
from server.auth.stepup import FreshAdmin
from server.directory.config import DirectorySettings
from server.runtime import Services, get_services
from server.services import directories
from server.services import directory as service
from server.services.errors import NotFound
from server.store import directories as rows

router = APIRouter(tags=["directory"])
SvcDep = Annotated[Services, Depends(get_services)]
Name = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
# A login may hold "/" (an OpenLDAP uid can): a `path` parameter. GET of a person and POST of an action never meet:
# the methods differ, and `action` is one of the catalog's ids.
Login = Annotated[str, Path(min_length=1, max_length=256)]
ActionId = Literal["unlock", "reset-password", "enable", "disable", "group-add", "group-remove"]


class ActionBody(BaseModel):
    """A catalog action's parameters; `confirm` must be true (the person saw what it does)."""

    model_config = ConfigDict(extra="forbid")
    confirm: Literal[True]
    group: str | None = Field(default=None, max_length=1024)  # group-add / group-remove: a DN from the allow-list
    password: str | None = Field(default=None, min_length=1, max_length=256)  # reset-password: typed; omitted: generated
    must_change: bool = True  # reset-password: "must change at next logon"


class DirectoryBody(DirectorySettings):
    """A directory made through the API: the settings of directories.yaml; `bind_password` omitted keeps the stored one
    (a password file is for the directories file only: the API never makes the server read a path it names)."""

    bind_password: str | None = Field(default=None, min_length=1, max_length=1024)


@router.get("/api/v1/directories")
def list_directories(svc: SvcDep, _p: DirectoryUser) -> dict[str, Any]:
    """The directories whose accounts can be looked up."""
    return {"items": directories.names(svc)}


@router.get("/api/v1/directories/{name}/people")
def search_people(
    svc: SvcDep, p: DirectoryUser, request: Request, name: Name, q: Annotated[str, Query(max_length=200)] = ""
) -> dict[str, Any]:
    """People whose login, e-mail or name starts with `q` (at least 2 characters; bounded; throttled per user)."""
    return {"items": service.search(svc, p.user, client_ip(request), name, q)}


@router.get("/api/v1/directories/{name}/people/{login:path}")
def get_person(svc: SvcDep, p: DirectoryUser, request: Request, name: Name, login: Login) -> dict[str, Any]:
    """One account: enabled, locked out (since when, bad passwords), password set and expiry, last logon, groups,
    whether it is protected, and which actions apply."""
    return dict(service.person_json(service.person(svc, p.user, client_ip(request), name, login)))


@router.post("/api/v1/directories/{name}/people/{login:path}/actions/{action}")
def run_action(
    svc: SvcDep, p: FreshDirectoryUser, request: Request, name: Name, login: Login, action: ActionId, body: ActionBody
) -> dict[str, Any]:
    """Run a catalog action, then read the account back: `took` and `result` say whether it worked. A generated
    password is in `password`, this once; a typed one is never echoed."""
    req = service.ActionRequest(action, body.group, body.password, body.must_change)
    done = service.act(svc, p.user, client_ip(request), name, login, req)
    answer: dict[str, Any] = {"action": done.action, "login": done.login, "took": done.took, "result": done.summary,
                              "person": service.person_json(done.person)}
    if done.password is not None:
        answer["password"] = done.password
    return answer


@router.get("/api/v1/admin/directories")
def admin_list(svc: SvcDep, _p: Admin) -> dict[str, Any]:
    """Every directory's settings (never the bind password: `bind_password_set` says whether one is stored)."""
    with svc.reader.connect() as conn:
        return {"items": [directories.describe(r) for r in rows.list_rows(conn)]}


@router.put("/api/v1/admin/directories/{name}")
def admin_save(svc: SvcDep, p: FreshAdmin, request: Request, name: Name, body: DirectoryBody) -> dict[str, Any]:
    """Create or change a directory (not one from the file); omit `bind_password` to keep the stored one."""
    values = {**body.model_dump(mode="json", exclude_unset=True), "name": name}
    with svc.engine.begin() as conn:
        directories.save_admin(conn, svc, p.user, client_ip(request), values)
        found = rows.get_row(conn, name)
    if found is None:
        raise NotFound(f"no directory named {name!r}")
    return directories.describe(found)


@router.delete("/api/v1/admin/directories/{name}", status_code=204)
def admin_delete(svc: SvcDep, p: FreshAdmin, request: Request, name: Name) -> None:
    """Remove a directory made on the admin pages or API."""
    with svc.engine.begin() as conn:
        directories.delete_admin(conn, p.user, client_ip(request), name)
