"""Directories as configuration: the file's entries synced into the database (bind password sealed), the ones admins
add on the pages, the per-app state (search throttling), and the endpoint a request talks to."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TypedDict

from pydantic import ValidationError

from server.directory.client import Client, Endpoint
from server.directory.config import DirectorySpec, bind_password, load_directories
from server.runtime import Services
from server.services.errors import Conflict, NotFound, ServiceError
from server.store import accounts
from server.store import directories as rows
from server.store.db import SYNC_DIRECTORIES, Connection, serialise_sync
from server.store.directories import DirectoryRow
from server.store.jsontypes import JsonObject, JsonValue

log = logging.getLogger("pocketnoc.directory")
SEARCH_BURST = 10.0  # searches a person may make at once (typing fast)
SEARCH_RATE = 4.0  # then this many a second
SECRET_FIELDS = ("bind_password", "bind_password_file")


@dataclass
class Directories:
    """What one app keeps about directories between requests."""

    buckets: dict[int, tuple[float, float]] = field(default_factory=dict)  # user id -> (tokens, last refill)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, user_id: int, now: float) -> bool:
        """One search for this user, if the bucket has a token (a steady 4 a second, bursts of 10)."""
        with self.lock:
            tokens, last = self.buckets.get(user_id, (SEARCH_BURST, now))
            tokens = min(SEARCH_BURST, tokens + max(0.0, now - last) * SEARCH_RATE)
            if tokens < 1:
                self.buckets[user_id] = (tokens, now)
                return False
            self.buckets[user_id] = (tokens - 1, now)
            return True


def runtime(svc: Services) -> Directories:
    """The app's directory state, made on first use."""
    if svc.directories is None:
        svc.directories = Directories()
    return svc.directories


def sync_file(svc: Services) -> list[str]:
    """Make the database's file directories match directories.yaml (admin-made ones stay); returns warnings.

    A ConfigError (file:line) stops the start, like the other config files.
    """
    config = load_directories(svc.settings.directories_file)
    warnings: list[str] = []
    with svc.engine.begin() as conn:
        serialise_sync(conn, SYNC_DIRECTORIES)  # serve processes starting together: one after the other
        wanted = {spec.name for spec in config.directories}
        for spec in config.directories:
            found = rows.get_row(conn, spec.name)
            if found is not None and found.source != "file":
                warnings.append(f"directory {spec.name}: also made on the admin pages; the file's entry is ignored")
                continue
            secret = svc.box.seal({"bind_password": bind_password(spec)})
            rows.save(conn, spec.name, "file", public_spec(spec), secret, None)
            warnings += spec.warnings()
        for row in rows.list_rows(conn):
            if row.source == "file" and row.name not in wanted:
                rows.remove(conn, row.name)
    for warning in warnings:
        log.warning("%s", warning)
    return warnings


def public_spec(spec: DirectorySpec) -> JsonObject:
    """A directory's settings without its secret (what is stored beside the sealed password and what the API shows)."""
    dumped: JsonObject = spec.model_dump(mode="json", exclude=set(SECRET_FIELDS))
    return dumped


def _spec(row: DirectoryRow, password: str) -> DirectorySpec:
    return DirectorySpec.model_validate({**row.spec, "bind_password": password})


class DirectoryName(TypedDict):
    """A directory as the directory home page and API list it."""

    name: str
    kind: JsonValue
    source: str


def names(svc: Services) -> list[DirectoryName]:
    """Every directory (name, kind, where it came from), for the directory home page and API."""
    with svc.reader.connect() as conn:
        return [{"name": r.name, "kind": r.spec.get("kind"), "source": r.source} for r in rows.list_rows(conn)]


def describe(row: DirectoryRow) -> JsonObject:
    """A directory as admins see it: its settings and whether a bind password is stored (never the password)."""
    return {"name": row.name, "source": row.source, **row.spec, "bind_password_set": row.secret is not None,
            "updated_at": row.updated_at, "updated_by": row.updated_by}


def load(svc: Services, name: str) -> tuple[DirectorySpec, Client]:
    """The directory named, its settings and a client for it (NotFound when there is none)."""
    with svc.reader.connect() as conn:
        row = rows.get_row(conn, name)
    if row is None:
        raise NotFound(f"no directory named {name!r}")
    password = str(svc.box.open(row.secret).get("bind_password", "")) if row.secret else ""
    spec = _spec(row, password or "-")
    return spec, Client(endpoint(spec, password))


def endpoint(spec: DirectorySpec, password: str) -> Endpoint:
    """What the LDAP client needs from a directory's settings."""
    return Endpoint(
        name=spec.name, kind=spec.kind, host=spec.host, port=spec.effective_port, security=spec.security,
        verify=spec.verify, ca_file=spec.ca_file, tls_name=spec.tls_name, bind_dn=spec.bind_dn, password=password,
        base_dns=tuple(spec.base_dns), timeout=spec.timeout_seconds,
    )


def save_admin(conn: Connection, svc: Services, actor: accounts.User, ip: str, values: JsonObject) -> str:
    """Create or change a directory from the admin pages; an empty bind password keeps the stored one. Audited."""
    name = str(values.get("name", ""))
    found = rows.get_row(conn, name)
    if found is not None and found.source == "file":
        raise Conflict(f"directory {name} comes from the directories file; change it there")
    if values.get("bind_password_file"):
        raise ServiceError("bind_password_file is for the directories file; send bind_password", 422)
    password = values.get("bind_password") or None
    if password is None and found is None:
        raise ServiceError("a new directory needs its bind password", 422)
    try:
        spec = DirectorySpec.model_validate({**values, "bind_password": password or "-"})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'directory'}: {e['msg']}" for e in exc.errors())
        raise ServiceError(problems, 422) from None
    secret = svc.box.seal({"bind_password": password}) if password else None
    rows.save(conn, spec.name, "admin", public_spec(spec), secret, actor.name)
    detail = {"kind": spec.kind, "host": spec.host, "security": spec.security, "password_changed": password is not None}
    accounts.write_audit(conn, actor, "directory.config" if found else "directory.create", spec.name, detail, ip)
    for warning in spec.warnings():
        log.warning("%s", warning)
    return spec.name


def delete_admin(conn: Connection, actor: accounts.User, ip: str, name: str) -> None:
    """Remove an admin-made directory (file ones go with the file). Audited."""
    found = rows.get_row(conn, name)
    if found is None:
        raise NotFound(f"no directory named {name!r}")
    if found.source == "file":
        raise Conflict(f"directory {name} comes from the directories file; remove it there")
    rows.remove(conn, name)
    accounts.write_audit(conn, actor, "directory.delete", name, {}, ip)


def throttle(svc: Services, user_id: int) -> None:
    """Refuse a search when this user searches faster than the bucket allows."""
    if not runtime(svc).take(user_id, svc.clock()):
        raise ServiceError("too many searches at once; wait a second and try again", 429)


def now() -> float:
    """The wall clock (directory times are compared with it)."""
    return time.time()
