"""The directories file (directories.yaml): Active Directory and LDAP servers whose accounts operators look after.

A directory is reached over LDAPS or StartTLS with a verified certificate; plain LDAP is refused unless the entry
says `allow_plain: true` (a lab), and then a warning is logged at every start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.config.inventory import LOWER_NAME_RE
from server.config.yamlsrc import ConfigError, LineDict, line_of, load_model, repeated

Kind = Literal["active-directory", "ldap"]
Security = Literal["ldaps", "starttls", "plain"]
DN = Field(min_length=3, max_length=1024)


class DirectorySettings(BaseModel):
    """A directory's settings but its name and bind password (what the admin API takes beside the password)."""

    model_config = ConfigDict(extra="forbid")
    kind: Kind
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:_-]+$")
    port: int | None = Field(default=None, ge=1, le=65535)  # default: 636 for ldaps, 389 otherwise
    security: Security = "ldaps"
    allow_plain: bool = False  # plain LDAP sends the bind password in the clear: labs only
    ca_file: Path | None = None  # CA bundle that signed the server's certificate (default: the system's)
    verify: bool = True  # check the certificate and its name; false only for a lab, with a warning
    tls_name: str | None = Field(default=None, max_length=253)  # name the certificate must carry (default: host)
    bind_dn: str = DN
    base_dns: list[str] = Field(min_length=1, max_length=20)
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    search_limit: int = Field(default=20, ge=1, le=100)  # the most people one search shows
    groups: list[str] = Field(default_factory=list, max_length=200)  # group DNs operators may add people to
    protected_groups: list[str] = Field(default_factory=list, max_length=50)  # members cannot be touched
    deny: list[str] = Field(default_factory=list, max_length=1000)  # logins or DNs that cannot be touched


class DirectorySpec(DirectorySettings):
    """One directory: where it is, how pocketnoc binds, where people live, and what may be touched."""

    name: str = Field(pattern=LOWER_NAME_RE)
    bind_password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    bind_password_file: Path | None = None  # read at start; the file's first line (the file only, not the API)

    @model_validator(mode="after")
    def _safe(self) -> DirectorySpec:
        if self.security == "plain" and not self.allow_plain:
            raise ValueError("plain LDAP sends the bind password in the clear: use security: ldaps or starttls "
                             "(or allow_plain: true for a lab)")
        if (self.bind_password is None) == (self.bind_password_file is None):
            raise ValueError("give exactly one of bind_password or bind_password_file")
        return self

    @property
    def effective_port(self) -> int:
        """The port to connect to."""
        return self.port or (636 if self.security == "ldaps" else 389)

    def warnings(self) -> list[str]:
        """What a start logs about this entry's lab settings."""
        found = []
        if self.security == "plain":
            found.append(f"directory {self.name}: plain LDAP (allow_plain): the bind password crosses the network in the clear")
        if not self.verify:
            found.append(f"directory {self.name}: certificate not verified (verify: false): anyone in the path can listen")
        return found


class DirectoriesConfig(BaseModel):
    """Everything in directories.yaml."""

    model_config = ConfigDict(extra="forbid")
    directories: list[DirectorySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> DirectoriesConfig:
        names = [d.name for d in self.directories]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate directory names: {', '.join(dupes)}")
        return self


def load_directories(path: Path | None) -> DirectoriesConfig:
    """Read directories.yaml (None: no directories); ConfigError lists every problem as file:line."""
    if path is None:
        return DirectoriesConfig()

    def cross_checks(tree: LineDict, schema: list[str]) -> list[str]:
        if any("duplicate" in p for p in schema):
            return []
        return [f"{path}:{line}: duplicate directory name {name!r} (first at line {first})"
                for name, line, first in repeated(tree.get("directories"), "name")]  # fmt: skip

    config, tree = load_model(path, DirectoriesConfig, "the directories file is a mapping with 'directories:'", cross_checks)
    if config is None:
        return DirectoriesConfig()
    problems = []
    for index, spec in enumerate(config.directories):
        for key, named in (("bind_password_file", spec.bind_password_file), ("ca_file", spec.ca_file)):
            if named is not None and not named.is_file():
                where = ("directories", index, key)
                problems.append(f"{path}:{line_of(tree, where)}: directories.{index}.{key}: not a readable file")
    if problems:
        raise ConfigError(problems)
    return config


def bind_password(spec: DirectorySpec) -> str:
    """The bind password: given inline, or the first line of its file."""
    if spec.bind_password is not None or spec.bind_password_file is None:
        return spec.bind_password or ""
    lines = spec.bind_password_file.read_text(encoding="utf-8").splitlines()
    return lines[0] if lines else ""
