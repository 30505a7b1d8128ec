"""Helpers for the directory-account tests: a directories file for each real peer, an operator holding the grant."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from server.config.settings import Settings
from server.directory.client import Client
from server.services import directories
from server.store import accounts, grants
from tests.peers import samba_dc, slapd
from tests.peers.samba_dc import SambaDC
from tests.peers.slapd import Slapd
from tests.server.conftest import AppEnv, bearer, make_app_env

VPN = f"CN=VPN Users,{samba_dc.USERS}"
WIFI = f"CN=Wifi Guests,{samba_dc.USERS}"


def ad_entry(dc: SambaDC, **overrides: Any) -> dict[str, Any]:
    """The Samba DC as a directories.yaml entry (LDAPS, its own CA, the name its certificate carries)."""
    return {
        "name": "corp", "kind": "active-directory", "host": dc.address, "security": "ldaps", "ca_file": str(dc.ca_file),
        "tls_name": dc.tls_name, "bind_dn": f"CN={samba_dc.BIND_LOGIN},{samba_dc.USERS}", "bind_password": dc.bind_password,
        "base_dns": [dc.domain_dn], "groups": [VPN, WIFI], "deny": ["starp"], "search_limit": 2, **overrides,
    }


def ldap_entry(peer: Slapd, **overrides: Any) -> dict[str, Any]:
    """The slapd peer as a directories.yaml entry (StartTLS on its port, its self-signed certificate)."""
    return {
        "name": "lab", "kind": "ldap", "host": "127.0.0.1", "port": peer.port, "security": "starttls",
        "ca_file": str(peer.ca_file), "bind_dn": slapd.BIND_DN, "bind_password": peer.bind_password,
        "base_dns": [slapd.SUFFIX], "groups": [f"cn=vpn,{slapd.GROUPS_OU}", f"cn=wifi,{slapd.GROUPS_OU}"],
        "protected_groups": [f"cn=wheel,{slapd.GROUPS_OU}"], **overrides,
    }


def write_directories(path: Path, *entries: dict[str, Any]) -> Path:
    """A directories.yaml with these entries."""
    path.write_text(yaml.safe_dump({"directories": list(entries)}))
    return path


def granted(env: AppEnv, name: str, role: str = "operator") -> str:
    """A bearer token of a new user holding the directory grant."""
    token = env.token(name, role)
    with env.svc.engine.begin() as conn:
        found = accounts.get_user_by_name(conn, name)
        assert found is not None
        if role == "operator":
            grants.add(conn, found[0].id, ["directory"], "test")
    return token


def client_of(env: AppEnv, name: str) -> Client:
    """The app's own LDAP client for a directory (to bind as a person the way a workstation would)."""
    return directories.load(env.svc, name)[1]


def audit_of(env: AppEnv, prefix: str = "directory.") -> list[dict[str, Any]]:
    """Directory audit entries, newest first."""
    with env.svc.reader.connect() as conn:
        return [e for e in accounts.read_audit(conn, 200) if str(e["action"]).startswith(prefix)]


def directory_app(settings: Settings, tmp_path: Path, *entries: dict[str, Any]) -> Iterator[AppEnv]:
    """An app (its own data dir under tmp_path) whose directories file holds these entries."""
    path = write_directories(tmp_path / "directories.yaml", *entries)
    yield from make_app_env(settings.model_copy(update={"directories_file": path}))


def act(env: AppEnv, token: str, name: str, login: str, action: str, **body: object) -> tuple[int, dict[str, Any]]:
    """POST a confirmed catalog action through the API: (status, answer)."""
    url = f"/api/v1/directories/{name}/people/{login}/actions/{action}"
    response = env.client.post(url, json={"confirm": True, **body}, headers=bearer(token))
    answer: dict[str, Any] = response.json()
    return response.status_code, answer
