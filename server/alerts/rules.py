"""Alert rules: a tiny safe expression language, the built-in defaults, and loading rules.yaml."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.config.inventory import DeviceName, RuleName, Tag
from server.config.yamlsrc import LineDict, load_model, repeated

Severity = Literal["critical", "warning", "info"]
SEVERITIES: tuple[str, ...] = ("critical", "warning", "info")
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_CLAUSE = re.compile(
    r"^\s*(?P<name>[a-z][a-z0-9_]{0,63})\s*(?:(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>-?[0-9.]+(?:e-?\d+)?|[a-z_]+)"
    r"|\s+in\s*\((?P<values>[a-z_,\s]+)\))\s*$"
)
STATE_WORDS = {"up", "degraded", "down", "unreachable", "unknown"}


@dataclass(frozen=True, slots=True)
class Clause:
    """One comparison: a metric (or `state`) against a number (or state words)."""

    name: str
    op: str
    value: float | str | frozenset[str]

    def test(self, actual: float | str) -> bool:
        """True when the observed value satisfies the clause."""
        if self.op == "in":
            return isinstance(self.value, frozenset) and actual in self.value
        if isinstance(self.value, str) or isinstance(actual, str):
            return OPS[self.op](str(actual), str(self.value))
        return OPS[self.op](float(actual), self.value)


def parse_expr(text: str) -> tuple[Clause, ...]:
    """Parse `clause (and clause)*`; raises ValueError with what is wrong."""
    if len(text) > 500:
        raise ValueError("expression too long")
    clauses = []
    for part in re.split(r"\s+and\s+", text.strip()):
        m = _CLAUSE.match(part)
        if not m:
            raise ValueError(f"cannot read {part.strip()!r}: write e.g. 'mem_used_pct > 90' or 'state in (down, unreachable)'")
        name = m["name"]
        if m["values"] is not None:
            words = frozenset(w.strip() for w in m["values"].split(",") if w.strip())
            if name == "state" and not words <= STATE_WORDS:
                raise ValueError(f"unknown state in {sorted(words - STATE_WORDS)}; states are {sorted(STATE_WORDS)}")
            clauses.append(Clause(name, "in", words))
            continue
        raw = m["value"]
        try:
            value: float | str = float(raw)
        except ValueError:
            value = raw
            if m["op"] not in ("==", "!="):
                raise ValueError(f"{raw!r} is not a number; only == and != compare words") from None
            if name == "state" and raw not in STATE_WORDS:
                raise ValueError(f"unknown state {raw!r}; states are {sorted(STATE_WORDS)}") from None
        clauses.append(Clause(name, m["op"], value))
    return tuple(clauses)


class Match(BaseModel):
    """Which devices a rule applies to (all given conditions must hold; empty = every device)."""

    model_config = ConfigDict(extra="forbid")
    devices: list[DeviceName] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    kinds: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)


class Rule(BaseModel):
    """An alert rule: when `expr` holds for `for` seconds it fires; it clears when `clear` holds."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: RuleName
    expr: str
    for_: int = Field(default=0, ge=0, le=86400 * 7, alias="for")
    clear: str | None = None
    # Watch a label set only once this has held for it (remembered): `if_oper_up == 1` keeps ports that were
    # never up — unused switch ports, virtual interfaces — from alerting, as Checkmk's discovery does.
    arm: str | None = None
    severity: Severity = "warning"
    title: str = Field(default="{device}: {rule}", max_length=200)
    match: Match = Field(default_factory=Match)
    labels: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("expr", "clear", "arm")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            parse_expr(value)
        return value

    @model_validator(mode="after")
    def _same_names(self) -> Rule:
        names = {c.name for c in parse_expr(self.expr)}
        for field_name, text in (("clear", self.clear), ("arm", self.arm)):
            if text is not None:
                extra = {c.name for c in parse_expr(text)} - names
                if extra:
                    raise ValueError(f"{field_name} uses {sorted(extra)} which expr does not")
        return self

    @property
    def clauses(self) -> tuple[Clause, ...]:
        """The parsed expression."""
        return _parsed(self.expr)

    @property
    def clear_clauses(self) -> tuple[Clause, ...] | None:
        """The parsed clear expression (None: clear when expr is false)."""
        return _parsed(self.clear) if self.clear else None

    @property
    def arm_clauses(self) -> tuple[Clause, ...] | None:
        """The parsed arm expression (None: every label set is watched from the start)."""
        return _parsed(self.arm) if self.arm else None


_cache: dict[str, tuple[Clause, ...]] = {}


def _parsed(text: str) -> tuple[Clause, ...]:
    if text not in _cache:
        _cache[text] = parse_expr(text)
    return _cache[text]


def _rule(**kw: Any) -> Rule:
    return Rule.model_validate(kw)


# Thresholds with hysteresis: a rule fires past one line and clears only back past another, so it does not flap.
def _above(name: str, metric: str, fire: float, clear: float, title: str, **kw: Any) -> Rule:
    return _rule(name=name, expr=f"{metric} > {fire:g}", clear=f"{metric} < {clear:g}", title=title, **kw)


def _below(name: str, metric: str, fire: float, clear: float, title: str, **kw: Any) -> Rule:
    return _rule(name=name, expr=f"{metric} < {fire:g}", clear=f"{metric} > {clear:g}", title=title, **kw)


_CPU_TITLE = "{device}: CPU at {value:.0f}%"
_TLS_TITLE = "{device}: TLS certificate ({check}) expires in {value:.0f} days"

DEFAULT_RULES: tuple[Rule, ...] = (
    _rule(name="device-down", expr="state in (down, unreachable)", severity="critical", title="{device} is {state}"),
    _rule(name="device-degraded", expr="state == degraded", severity="warning", for_=60, title="{device} is degraded"),
    _rule(
        name="interface-down",
        expr="if_oper_up == 0 and if_admin_up == 1",
        arm="if_oper_up == 1",
        severity="warning",
        title="{device}: interface {ifName} is down",
    ),
    _above("cpu-high", "cpu_load_pct", 90, 80, _CPU_TITLE, for_=300),
    _above("ssh-cpu-high", "cpu_pct", 90, 80, _CPU_TITLE, for_=300),
    _above("memory-high", "mem_used_pct", 95, 90, "{device}: memory at {value:.0f}%", for_=300),
    _above("disk-full", "storage_used_pct", 90, 85, "{device}: {storage} is {value:.0f}% full"),
    _above("fs-full", "fs_used_pct", 90, 85, "{device}: {mount} is {value:.0f}% full"),
    _above("inodes-full", "fs_inodes_used_pct", 90, 85, "{device}: {mount} inodes {value:.0f}% used"),
    _above("load-high", "load5", 16, 12, "{device}: load {value:.1f}", for_=300),
    _above("interface-errors", "if_in_errors_rate", 1, 0.1, "{device}: errors on {ifName}", for_=300),
    _rule(name="ups-on-battery", expr="ups_on_battery == 1", severity="critical", title="{device}: on battery"),
    _below("ups-charge-low", "ups_charge_pct", 50, 60, "{device}: battery at {value:.0f}%", severity="critical"),
    _below("printer-supply-low", "printer_supply_pct", 10, 20, "{device}: {supply} at {value:.0f}%", severity="info"),
    _below("tls-expiring", "tls_cert_days_left", 14, 20, _TLS_TITLE),
    _below("tls-expired", "tls_cert_days_left", 2, 3, _TLS_TITLE, severity="critical"),
    _rule(
        name="check-failing",
        expr="check_up == 0",
        severity="critical",
        match=Match(labels={"kind": "http"}),
        title="{device}: {check} failing",
    ),
    _rule(name="systemd-failed", expr="systemd_failed_units > 0", title="{device}: {value:.0f} failed systemd units"),
    _rule(name="command-check", expr="command_ok == 0", title="{device}: check {check} failed"),
)


class RulesFile(BaseModel):
    """Shape of rules.yaml."""

    model_config = ConfigDict(extra="forbid")
    defaults: bool = True
    rules: list[Rule] = Field(default_factory=list)


def load_rules(path: Path) -> list[Rule]:
    """Rules from a YAML file (plus the defaults unless `defaults: false`); errors name file and line."""
    def duplicates(tree: LineDict, _schema: list[str]) -> list[str]:
        return [f"{path}:{line}: duplicate rule name {name!r}" for name, line, _first in repeated(tree.get("rules"), "name")]

    shape = "a rules file is a mapping with 'rules:' (and optional 'defaults:')"
    parsed, _tree = load_model(path, RulesFile, shape, duplicates)
    if parsed is None:
        return list(DEFAULT_RULES)
    if not parsed.defaults:
        return parsed.rules
    own = {r.name for r in parsed.rules}
    return [r for r in DEFAULT_RULES if r.name not in own] + parsed.rules
