"""The action catalog (config/actions.yaml): typed actions, validated whole at start with file:line errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from agents.userregex import RegexError, compile_user_regex, inline_flags
from server.actions.template import placeholders
from server.config.inventory import TAG_RE
from server.config.yamlsrc import LineDict, load_model, repeated

ACTION_ID_RE = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
KIND_RE = r"^[a-z][a-z0-9_-]{0,31}$"
STRING_MAX = 1024  # no string parameter may be longer, whatever the catalog says
OUTPUT_MAX = 1024 * 1024
Danger = Literal["low", "medium", "high"]
ActionId = Annotated[str, StringConstraints(pattern=ACTION_ID_RE)]
Tag = Annotated[str, StringConstraints(pattern=TAG_RE)]
Kind = Annotated[str, StringConstraints(pattern=KIND_RE)]


def _one_line(value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()
        if any(c in value for c in "\x00\r\n"):
            raise ValueError("a command is one line without NUL (chain with ; or &&)")
    return value


Command = Annotated[str, BeforeValidator(_one_line), StringConstraints(min_length=1, max_length=4096)]
Choice = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_@%+=:,./][A-Za-z0-9_@%+=:,./-]*$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Strict):
    """One typed parameter: an enum of choices, an integer range, a string matched whole by a pattern, or a thing
    the device has (interface, storage, filesystem, service), chosen from the device's last poll."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    type: Literal["enum", "integer", "string", "interface", "storage", "filesystem", "service"]
    title: str = Field(default="", max_length=80)
    description: str = Field(default="", max_length=500)
    choices: list[Choice] | None = Field(default=None, min_length=1, max_length=200)
    min: int | None = None
    max: int | None = None
    pattern: str | None = Field(default=None, max_length=500)
    max_length: int = Field(default=128, ge=1, le=STRING_MAX)
    default: str | int | None = None

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        given = {k for k in ("choices", "min", "max", "pattern") if getattr(self, k) is not None}
        wanted = {"enum": {"choices"}, "integer": {"min", "max"}, "string": {"pattern"}}.get(self.type, set())
        if given != wanted:
            extra, missing = sorted(given - wanted), sorted(wanted - given)
            parts = ([f"needs {', '.join(missing)}"] if missing else []) + ([f"takes no {', '.join(extra)}"] if extra else [])
            raise ValueError(f"a {self.type} parameter {' and '.join(parts)}")
        if self.type == "integer" and self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is above max")
        if self.pattern is not None:
            try:
                compile_user_regex(self.pattern, max_chars=500)
            except RegexError as exc:
                raise ValueError(f"pattern: {exc}") from None
            if inline_flags(self.pattern) & {"m", "s"}:
                raise ValueError("pattern must not use (?m) or (?s): it is matched against the whole value")
        if self.choices is not None and len(set(self.choices)) != len(self.choices):
            raise ValueError("choices repeat")
        if self.default is not None and self.is_target:
            raise ValueError(f"a {self.type} parameter has no default: it is chosen from what the device has")
        if self.default is not None:
            from server.actions.params import ParamError, check_value

            try:
                check_value(self, self.default)
            except ParamError as exc:
                raise ValueError(f"default: {exc}") from None
        return self

    @property
    def label(self) -> str:
        """What a form shows."""
        return self.title or self.name.replace("_", " ")

    @property
    def is_target(self) -> bool:
        """Names a thing on the device: chosen from a list, never typed."""
        return self.type not in ("enum", "integer", "string")


class AppliesTo(_Strict):
    """Which devices an action is offered for: any of these kinds and any of these tags (empty = any)."""

    kinds: list[Kind] = Field(default_factory=list, max_length=20)
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    rules: list[str] = Field(default_factory=list, max_length=20)  # alert rules this action is suggested for


class Varbind(_Strict):
    """One SET: a numeric OID (may hold integer placeholders) and an integer or string value."""

    oid: str = Field(min_length=3, max_length=300, pattern=r"^[0-9.{}a-z_]+$")
    type: Literal["integer", "string"]
    value: int | str
    read_back: bool = True  # false for trigger objects that read back something else (a reset)

    @model_validator(mode="after")
    def _typed(self) -> Varbind:
        if self.type == "integer" and isinstance(self.value, str) and not re.fullmatch(r"\{[a-z][a-z0-9_]*\}", self.value):
            raise ValueError("an integer value is a number or a single {param}")
        if isinstance(self.value, str) and len(self.value) > 255:
            raise ValueError("value is longer than 255 characters")
        return self


class SnmpStep(_Strict):
    """A step of an SNMP action: SET some varbinds (each read back afterwards), or wait some seconds."""

    set: list[Varbind] | None = Field(default=None, min_length=1, max_length=10)
    wait: float | None = Field(default=None, gt=0, le=120)

    @field_validator("set", mode="before")
    @classmethod
    def _one(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _either(self) -> SnmpStep:
        if (self.set is None) == (self.wait is None):
            raise ValueError("a step is either set: or wait:")
        return self


_HOLD = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(polls?|checks?|s|sec|seconds?|m|min|minutes?)\s*$")


class Hold(_Strict):
    """How long a fix must hold before it counts as verified: this many checks and this many seconds."""

    polls: int = Field(default=1, ge=1, le=20)
    seconds: float = Field(default=0, ge=0, le=1800)


def _hold(value: Any) -> Any:
    """`hold:` in words (2 polls, 120s, 2 min) or a number of seconds, as a Hold."""
    if isinstance(value, dict | Hold):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("hold is a number of polls ('2 polls') or a time ('120s', '2 min')")
    if isinstance(value, int | float):
        return {"seconds": value}
    found = _HOLD.match(value)
    if found is None:
        raise ValueError(f"hold {value!r}: write '2 polls', '120s' or '2 min'")
    number, unit = float(found.group(1)), found.group(2)
    if unit.startswith(("poll", "check")):
        return {"polls": max(1, int(number))}
    return {"seconds": number * (60 if unit.startswith("m") else 1)}


class VerifySpec(_Strict):
    """How to prove the fix worked: an SSH check command (exit 0 = fixed) and/or a re-poll of device and alert,
    and how long the fix must hold (re-checked until it has: `hold: 2 polls` or `hold: 120s`)."""

    ssh: Command | None = None
    repoll: bool = True
    delay: float = Field(default=0, ge=0, le=600)
    within: float = Field(default=30, ge=0, le=1800)
    hold: Annotated[Hold, BeforeValidator(_hold)] = Field(default_factory=Hold)

    @property
    def hold_polls(self) -> int:
        """Checks in a row that must find it fixed."""
        return self.hold.polls

    @property
    def hold_seconds(self) -> float:
        """Seconds it must stay fixed."""
        return self.hold.seconds


class ActionSpec(_Strict):
    """One catalog entry: what it is, where it applies, who may run it, and exactly what it runs."""

    id: ActionId
    title: str = Field(min_length=1, max_length=80)
    description: str = Field(default="", max_length=1000)
    applies_to: AppliesTo = Field(default_factory=AppliesTo)
    role: Literal["operator", "admin"] = "operator"
    danger: Danger = "medium"
    timeout: float = Field(default=60, gt=0, le=3600)
    max_output: int = Field(default=64 * 1024, ge=1024, le=OUTPUT_MAX)
    concurrent: bool = False
    params: list[ParamSpec] = Field(default_factory=list, max_length=10)
    ssh: Command | None = None
    snmp: list[SnmpStep] | None = Field(default=None, min_length=1, max_length=10)
    verify: VerifySpec = Field(default_factory=VerifySpec)

    @field_validator("role", mode="before")
    @classmethod
    def _no_viewers(cls, value: Any) -> Any:
        if value == "viewer":
            raise ValueError("viewers never run actions: use operator or admin")
        return value

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, value: Any) -> Any:
        # `verify: false` (e.g. a read-only action): nothing to prove.
        if value is False:
            return {"repoll": False}
        return {} if value is True or value is None else value

    @model_validator(mode="after")
    def _consistent(self) -> ActionSpec:
        if (self.ssh is None) == (self.snmp is None):
            raise ValueError("give exactly one of ssh: (a command template) or snmp: (SET steps)")
        names = [p.name for p in self.params]
        if len(names) != len(set(names)):
            raise ValueError("parameter names repeat")
        types = {p.name: p for p in self.params}
        used: set[str] = set()
        for where, template in self._templates():
            try:
                found = placeholders(template)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            unknown = sorted(set(found) - set(names))
            if unknown:
                raise ValueError(f"{where} uses {', '.join(unknown)}: not declared under params")
            if where.startswith("snmp oid") or where.startswith("snmp integer"):
                for name in found:
                    p = types[name]
                    numeric = p.type in ("integer", "interface", "storage")
                    if not numeric and not (p.type == "enum" and all(c.isdigit() for c in p.choices or [])):
                        raise ValueError(f"{where}: {name} must be an integer (or an enum of numbers) to go into an OID")
            used |= set(found)
        unused = sorted(set(names) - used)
        if unused:
            raise ValueError(f"parameter {', '.join(unused)} is declared but not used")
        if self.verify.ssh is not None and self.ssh is None:
            raise ValueError("verify.ssh needs an SSH action (the device must have SSH)")
        return self

    def _templates(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        if self.ssh is not None:
            out.append(("ssh", self.ssh))
        for step in self.snmp or []:
            for vb in step.set or []:
                out.append(("snmp oid", vb.oid))
                if isinstance(vb.value, str):
                    out.append(("snmp integer value" if vb.type == "integer" else "snmp value", vb.value))
        if self.verify.ssh is not None:
            out.append(("verify.ssh", self.verify.ssh))
        return out

    @property
    def kind(self) -> str:
        """'ssh' or 'snmp'."""
        return "ssh" if self.ssh is not None else "snmp"

    @property
    def dangerous(self) -> bool:
        """High danger: typed device name, a reason and a fresh second factor before it runs."""
        return self.danger == "high"

    def public(self) -> dict[str, Any]:
        """The entry as the API shows it (everything: the catalog is not secret)."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["kind"] = self.kind
        data["needs"] = {"confirm_name": self.dangerous, "reason": self.dangerous, "fresh_2fa": self.dangerous}
        return data


class CatalogFile(_Strict):
    """Shape of actions.yaml."""

    actions: list[ActionSpec] = Field(default_factory=list, max_length=500)


@dataclass(frozen=True)
class Catalog:
    """The actions in force, by id, in file order."""

    actions: dict[str, ActionSpec] = field(default_factory=dict)
    path: Path | None = None

    def get(self, action_id: str) -> ActionSpec | None:
        """One action, or None."""
        return self.actions.get(action_id)


def load_catalog(path: Path | None) -> Catalog:
    """Read and validate a catalog file; ConfigError lists every problem as 'file:line: message'."""
    if path is None:
        return Catalog()
    def duplicates(tree: LineDict, _schema: list[str]) -> list[str]:
        return [f"{path}:{line}: duplicate action id {name!r} (first at line {first})"
                for name, line, first in repeated(tree.get("actions"), "id")]  # fmt: skip

    parsed, _tree = load_model(path, CatalogFile, "an actions file is a mapping with 'actions:' (a list)", duplicates)
    if parsed is None:
        return Catalog(path=path)
    return Catalog({a.id: a for a in parsed.actions}, path)
