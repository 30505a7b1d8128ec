"""Inventory models shared by the YAML config and the API: one definition, one validation."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator, model_validator

from agents import nagios
from agents.userregex import RegexError, compile_user_regex

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
TAG_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,31}$"
KIND_RE = r"^[a-z][a-z0-9_-]{0,31}$"
SSH_USER_RE = r"^[A-Za-z0-9._][A-Za-z0-9._-]*$"
LOWER_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"  # rule, channel and action ids
HHMM_RE = r"^([01]\d|2[0-3]):[0-5]\d$"
CHECK_TIMEOUT = 5  # seconds, a ping/TCP/HTTP check's default timeout
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")

# Each pattern above in words, for people (forms, API 422 bodies, config errors) instead of the raw regex;
# tests/server/test_config_errors.py checks each sentence against its pattern's edges.
PATTERN_WORDS: dict[str, str] = {
    NAME_RE: "a name is 1–64 letters, digits, dot, dash or underscore, starting with a letter or digit",
    TAG_RE: "a tag is 1–32 letters, digits, dot, dash, underscore or colon, starting with a letter or digit",
    KIND_RE: "a kind is 1–32 lowercase letters, digits, dash or underscore, starting with a letter",
    SSH_USER_RE: "a user name is letters, digits, dot, dash or underscore, not starting with a dash",
    LOWER_NAME_RE: "a name is 1–64 lowercase letters, digits, dot, dash or underscore, starting with a letter or digit",
    HHMM_RE: "a time of day is HH:MM, from 00:00 to 23:59",
}


class FieldError(TypedDict):
    """One invalid field as a 422 body lists it."""

    loc: list[str]
    msg: str
    type: str | None


def error_message(err: Mapping[str, object]) -> str:
    """A pydantic error's message for people: a known pattern in words, without pydantic's 'Value error, ' prefix."""
    if err.get("type") == "string_pattern_mismatch":
        ctx = err.get("ctx")
        words = PATTERN_WORDS.get(str(ctx.get("pattern"))) if isinstance(ctx, Mapping) else None
        if words is not None:
            return words
    return str(err.get("msg", "")).removeprefix("Value error, ")


def error_list(errors: Iterable[Mapping[str, object]]) -> list[FieldError]:
    """Pydantic errors as an API 422 body lists them: structured `loc`, a message for people, the error type."""
    found: list[FieldError] = []
    for e in errors:
        loc = e.get("loc", ())
        parts = [str(p) for p in loc] if isinstance(loc, list | tuple) else []
        kind = e.get("type")
        found.append({"loc": parts, "msg": error_message(e)[:300], "type": kind if isinstance(kind, str) else None})
    return found


DeviceName = Annotated[str, StringConstraints(pattern=NAME_RE)]
Tag = Annotated[str, StringConstraints(pattern=TAG_RE)]
RULE_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
RuleName = Annotated[str, StringConstraints(pattern=RULE_NAME_RE)]  # an alert rule's name, where rules and routes name it
Secret = Annotated[str, StringConstraints(min_length=1, max_length=512)]


def validate_address(value: str) -> str:
    """Accept an IP literal or an RFC 1123 host name; refuse URLs, spaces and junk."""
    value = value.strip()
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"{value!r} is neither an IP address nor a valid DNS name")
    if name.replace(".", "").isdigit():
        raise ValueError(f"{value!r} looks like a malformed IPv4 address")
    return name.lower()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


AuthProtocol = Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"]
PrivProtocol = Literal["des", "aes128", "aes192", "aes256"]


class UsmUser(_Strict):
    """SNMPv3 user-based security: the one declaration of user, protocols and keys (devices, writes, trap senders)."""

    user: str | None = Field(default=None, max_length=64)
    auth_protocol: AuthProtocol | None = None
    auth_key: Secret | None = None
    priv_protocol: PrivProtocol | None = None
    priv_key: Secret | None = None

    def check_v3(self, what: str = "") -> None:
        """Refuse a v3 user that cannot work: no user, a protocol without its key, privacy without authentication."""
        if not self.user:
            raise ValueError(f"SNMP v3 {what}needs a user")
        if bool(self.auth_protocol) != bool(self.auth_key):
            raise ValueError(f"SNMP v3 {what}auth_protocol and auth_key go together")
        if bool(self.priv_protocol) != bool(self.priv_key):
            raise ValueError(f"SNMP v3 {what}priv_protocol and priv_key go together")
        if self.priv_key and not self.auth_key:
            raise ValueError(f"SNMP v3 {what}privacy needs authentication too")
        for key in (self.auth_key, self.priv_key):
            if key is not None and len(key) < 8:
                raise ValueError(f"SNMP v3 {what}keys must be at least 8 characters")

    def check_community(self, version: str, what: str = "") -> None:
        """Refuse v1/v2c credentials without a community or with v3 fields."""
        community = getattr(self, "community", None)
        if not community:
            raise ValueError(f"SNMP v{version} {what}needs a community")
        if self.user or self.auth_key or self.priv_key:
            raise ValueError(f"{what}user/auth_key/priv_key belong to SNMP v3 only")


class SnmpCredentialsSpec(UsmUser):
    """SNMP credentials of one kind of access: a community (v1/v2c) or a v3 user, and a context."""

    community: Secret | None = None
    context: str = Field(default="", max_length=64)


class SnmpWriteSpec(SnmpCredentialsSpec):
    """SNMP write (SET) credentials, kept apart from the read ones and used only by actions."""


class SnmpSpec(SnmpCredentialsSpec):
    """SNMP access to a device: read credentials, and optional separate `write` credentials for actions."""

    version: Literal["1", "2c", "3"] = "2c"
    port: int = Field(default=161, ge=1, le=65535)
    timeout: float | None = Field(default=None, gt=0, le=60)
    retries: int | None = Field(default=None, ge=0, le=5)
    write: SnmpWriteSpec | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @model_validator(mode="after")
    def _credentials(self) -> SnmpSpec:
        v1 = self.version in ("1", "2c")
        for creds, what in ((self, ""), (self.write, "write ")):
            if creds is None:
                continue
            if v1:
                creds.check_community(self.version, what)
            elif creds.community and creds is self.write:  # a read community left beside v3 stays harmless
                raise ValueError(f"{what}community belongs to SNMP v1/v2c only")
            else:
                creds.check_v3(what)
        return self


class CommandCheckSpec(_Strict):
    """A custom SSH command check: exactly this command, judged by exit code, regex or value."""

    name: DeviceName
    command: str = Field(min_length=1, max_length=4096)
    expect_exit: int | None = Field(default=0, ge=0, le=255)
    regex: str | None = Field(default=None, max_length=1024)
    value_regex: str | None = Field(default=None, max_length=1024)
    warn: float | None = None
    crit: float | None = None
    timeout: float = Field(default=10, gt=0, le=600)

    @field_validator("regex", "value_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_user_regex(value)
            except RegexError as exc:
                raise ValueError(str(exc)) from None
        return value


class SshSpec(_Strict):
    """SSH access to a server; host keys are pinned, never trusted blindly."""

    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64, pattern=SSH_USER_RE)
    password: Secret | None = None
    key_file: str | None = Field(default=None, max_length=4096)
    key_passphrase: Secret | None = None
    host_key: list[str] = Field(default_factory=list)
    commands: list[CommandCheckSpec] = Field(default_factory=list, max_length=50)
    timeout: float | None = Field(default=None, gt=0, le=120)

    @field_validator("host_key", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("host_key")
    @classmethod
    def _key_shape(cls, keys: list[str]) -> list[str]:
        for key in keys:
            parts = key.split()
            if len(parts) < 2 or not re.fullmatch(r"(ssh|ecdsa|sk)-[A-Za-z0-9@.-]+", parts[0]):
                raise ValueError("host_key must look like 'ssh-ed25519 AAAA...'")
        return [" ".join(key.split()[:2]) for key in keys]

    @model_validator(mode="after")
    def _auth(self) -> SshSpec:
        if not self.password and not self.key_file:
            raise ValueError("SSH needs a password or a key_file")
        names = [c.name for c in self.commands]
        if len(names) != len(set(names)):
            raise ValueError("command check names must be unique per device")
        return self


BUILTIN_CHECKS = ("ping", "tcp", "http")
OWN_PLUGIN_CHECKS = ("nagios",)  # built-in collectors loaded through the plug-in door, configured by options
_Word = Annotated[str, Field(max_length=1024)]
# A list of strings is a nagios check's arguments: a typed list, never a shell line.
PluginOption = _Word | int | float | bool | Annotated[list[_Word], Field(max_length=64)]


def _plugin_kinds() -> list[str]:
    """Check kinds that installed collector plug-ins add (SNMP and SSH have blocks of their own)."""
    from agents import builtin
    from agents.base import REGISTRY

    builtin.load()
    return sorted(k for k in REGISTRY if k not in (*BUILTIN_CHECKS, *OWN_PLUGIN_CHECKS, "snmp", "ssh"))


class CheckSpec(_Strict):
    """A ping, TCP or HTTP check of the device (or of a URL), or a check of a kind an installed plug-in adds."""

    type: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    options: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], PluginOption] = Field(
        default_factory=dict, max_length=32
    )  # a plug-in check's own settings, handed to its collector as they are
    name: DeviceName | None = None
    interval: int | None = Field(default=None, ge=5, le=86400)
    port: int | None = Field(default=None, ge=1, le=65535)
    count: int = Field(default=3, ge=1, le=20)
    url: str | None = Field(default=None, max_length=2048)
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    expected_status: list[int] = Field(default_factory=list)
    body_regex: str | None = Field(default=None, max_length=1024)
    timeout: float = Field(default=CHECK_TIMEOUT, gt=0, le=120)
    follow_redirects: bool = False
    verify_tls: bool = True
    allow_link_local: bool = False

    @field_validator("expected_status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value

    @field_validator("options", mode="before")
    @classmethod
    def _nagios_options(cls, value: Any, info: ValidationInfo) -> Any:
        # Before the generic option types: one sentence (quote the 5 in [-w, 5]) instead of five union errors.
        if info.data.get("type") == "nagios" and (problem := nagios.option_problem(value if isinstance(value, dict) else {})):
            raise ValueError(problem)
        return value

    @field_validator("type")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value in BUILTIN_CHECKS or value in OWN_PLUGIN_CHECKS:
            return value
        plugins = _plugin_kinds()
        if value not in plugins:
            extra = f", or a plug-in's kind ({', '.join(plugins)})" if plugins else " (no check plug-in is installed)"
            raise ValueError(f"unknown check type {value!r}: one of ping, tcp, http, nagios{extra}")
        return value

    @property
    def is_plugin(self) -> bool:
        """Whether a plug-in's collector runs this check."""
        return self.type not in BUILTIN_CHECKS

    @model_validator(mode="after")
    def _shape(self) -> CheckSpec:
        if self.options and not self.is_plugin:
            raise ValueError(f"options are for plug-in check types, not {self.type}")
        if self.type == "tcp" and self.port is None:
            raise ValueError("a tcp check needs a port")
        if self.type == "http" and not self.url:
            raise ValueError("an http check needs a url")
        if self.url and not re.match(r"^https?://", self.url, re.IGNORECASE):
            raise ValueError("url must start with http:// or https://")
        if self.url and any(ord(c) < 32 or ord(c) == 127 for c in self.url):
            raise ValueError("url must not contain control characters (the poller would refuse it)")
        if self.body_regex:
            try:
                compile_user_regex(self.body_regex)
            except RegexError as exc:
                raise ValueError(f"body_regex: {exc}") from None
        return self

    @property
    def check_name(self) -> str:
        """Stable name of this check on its device."""
        if self.name:
            return self.name
        return f"{self.type}-{self.port}" if self.type == "tcp" else self.type


class PortsSpec(_Strict):
    """Ports that actions must treat with care: the one pocketnoc manages the device through, and its uplink."""

    management: str | None = Field(default=None, min_length=1, max_length=64)  # when IP-MIB cannot tell
    uplink: str | None = Field(default=None, min_length=1, max_length=64)  # else: the port whose alias names the parent


class DeviceSpec(_Strict):
    """One device of the inventory."""

    name: DeviceName
    address: str = Field(max_length=253)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    parent: DeviceName | None = None
    interval: int | None = Field(default=None, ge=5, le=86400)
    kind: str | None = Field(default=None, pattern=KIND_RE)
    snmp: SnmpSpec | None = None
    ssh: SshSpec | None = None
    checks: list[CheckSpec] = Field(default_factory=list, max_length=20)
    ports: PortsSpec | None = None
    enabled: bool = True

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return validate_address(value)

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _self_parent(self) -> DeviceSpec:
        if self.parent == self.name:
            raise ValueError("a device cannot be its own parent")
        names = [c.check_name for c in self.checks]
        if len(names) != len(set(names)):
            raise ValueError("check names must be unique per device (give each a 'name')")
        if self.ssh is None and any(c.type == "nagios" and c.options.get("via") == "ssh" for c in self.checks):
            raise ValueError("a nagios check with via: ssh needs the device's ssh block (login and pinned host key)")
        return self


def timeout_problems(spec: DeviceSpec, default_interval: int) -> list[tuple[tuple[str | int, ...], str]]:
    """(location in the spec, message) for every timeout that does not end before the check's next turn.

    A check still running when its interval comes round is skipped (counted on /metrics), so such a timeout
    never takes effect: it is refused, as Zabbix and Checkmk refuse it, rather than silently cut. The default
    check timeout (5 s) at the shortest interval (5 s) is let through: it only skips a turn when the target hangs."""
    every = spec.interval or default_interval
    out: list[tuple[tuple[str | int, ...], str]] = []

    def judge(loc: tuple[str | int, ...], timeout: float, interval: int) -> None:
        if timeout >= interval and not (timeout == interval == CHECK_TIMEOUT):
            out.append((loc, f"timeout {timeout:g} s must be shorter than the interval ({interval} s): "
                             "a check still running at its next turn is skipped"))

    for index, check in enumerate(spec.checks):
        judge(("checks", index, "timeout"), check.timeout, check.interval or every)
    if spec.snmp is not None and spec.snmp.timeout is not None:
        judge(("snmp", "timeout"), spec.snmp.timeout, every)
    if spec.ssh is not None and spec.ssh.timeout is not None:
        judge(("ssh", "timeout"), spec.ssh.timeout, every)
    return out


def parent_cycles(devices: list[DeviceSpec]) -> list[str]:
    """Names of devices whose parent chain loops back on itself."""
    parents = {d.name: d.parent for d in devices}
    looped: list[str] = []
    for name in parents:
        seen: set[str] = set()
        node: str | None = name
        while node is not None and node not in seen:
            seen.add(node)
            node = parents.get(node)
        if node == name:
            looped.append(name)
    return looped
