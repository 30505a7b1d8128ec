"""The notifications file (channels.yaml): channels, routes, escalations, delivery timing, push and dead-man settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from server.config.inventory import NAME_RE, DeviceName, RuleName, Tag
from server.config.timezones import Weekly
from server.config.yamlsrc import ConfigError, LineDict, line_of, load_model, repeated

Severity = Literal["critical", "warning", "info"]
HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
CHANNEL_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class TimeWindow(Weekly):
    """A daily window (it may run past midnight) on some weekdays (0 = Monday), in a time zone."""

    start: str = Field(pattern=HHMM)
    end: str = Field(pattern=HHMM)

    def contains(self, ts: float) -> bool:
        """Is `ts` inside the window? A window that runs past midnight belongs to the day it starts."""
        local = datetime.fromtimestamp(ts, UTC).astimezone(ZoneInfo(self.tz))
        sh, sm = (int(x) for x in self.start.split(":"))
        eh, em = (int(x) for x in self.end.split(":"))
        length = (eh * 60 + em - sh * 60 - sm) % 1440 or 1440
        for back in (0, 1):
            day = local - timedelta(days=back)
            if day.weekday() not in self.days:
                continue
            begin = day.replace(hour=sh, minute=sm, second=0, microsecond=0)
            if begin <= local < begin + timedelta(minutes=length):
                return True
        return False


class Match(BaseModel):
    """Which alerts a route takes; an empty list matches anything."""

    model_config = ConfigDict(extra="forbid")
    severity: list[Severity] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)  # any of the device's tags
    devices: list[DeviceName] = Field(default_factory=list)  # a typo'd name is refused, not a route that never matches
    rules: list[RuleName] = Field(default_factory=list)

    def matches(self, severity: str, tags: list[str], device: str, rule: str) -> bool:
        """Does an alert with these properties match?"""
        return (
            (not self.severity or severity in self.severity)
            and (not self.tags or any(t in tags for t in self.tags))
            and (not self.devices or device in self.devices)
            and (not self.rules or rule in self.rules)
        )


class Route(BaseModel):
    """Alerts that match go to these users (their phones and personal channels) and channels."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=CHANNEL_NAME)
    match: Match = Field(default_factory=Match)
    users: list[str] = Field(default_factory=list)  # "*" = every user
    channels: list[str] = Field(default_factory=list)  # "*" = every shared channel
    escalation: str | None = None
    when: TimeWindow | None = None  # the route applies only inside this window
    quiet_hours: TimeWindow | None = None  # inside it only critical alerts go out
    stop: bool = False  # later routes are not tried when this one matched

    def applies(self, severity: str, tags: list[str], device: str, rule: str, now: float) -> bool:
        """Does the route take this alert now (match, time window, quiet hours)?"""
        if not self.match.matches(severity, tags, device, rule):
            return False
        if self.when is not None and not self.when.contains(now):
            return False
        return not (self.quiet_hours is not None and severity != "critical" and self.quiet_hours.contains(now))


class Step(BaseModel):
    """One escalation step: whom to notify when the alert is still unacknowledged after_minutes later."""

    model_config = ConfigDict(extra="forbid")
    after_minutes: float = Field(gt=0, le=7 * 1440)
    users: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _someone(self) -> Step:
        if not self.users and not self.channels:
            raise ValueError("a step needs users or channels")
        return self


class Escalation(BaseModel):
    """Steps taken one after another until someone acknowledges, `loops` times over."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=CHANNEL_NAME)
    steps: list[Step] = Field(min_length=1, max_length=20)
    loops: int = Field(default=1, ge=1, le=20)


class ChannelSpec(BaseModel):
    """A channel declared in the file (kept in the database encrypted, like API-made ones)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=CHANNEL_NAME)
    url: str = Field(min_length=3, max_length=2000)
    user: str | None = Field(default=None, pattern=NAME_RE)  # personal channel of this user
    enabled: bool = True
    allow_unsafe: bool = False  # link-local targets, non-http transports, cleartext SMTP off loopback


class Delivery(BaseModel):
    """Timing of the worker: polling, retries, grouping, broken channels, action tokens."""

    model_config = ConfigDict(extra="forbid")
    poll_seconds: float = Field(default=1.0, gt=0, le=60)
    concurrency: int = Field(default=32, ge=1, le=256)
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    backoff_seconds: float = Field(default=5.0, gt=0, le=3600)
    backoff_max_seconds: float = Field(default=900.0, gt=0, le=86400)
    probe_seconds: float = Field(default=3.0, gt=0, le=3600)
    retry_after_max_seconds: float = Field(default=3600.0, gt=0, le=86400)
    max_age_hours: float = Field(default=24.0, gt=0, le=24 * 14)
    burst: int = Field(default=3, ge=1, le=100_000)
    burst_window_seconds: float = Field(default=60.0, gt=0, le=3600)
    summary_delay_seconds: float = Field(default=10.0, ge=0, le=3600)
    recheck_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How long a new alert behind a parent waits for the parent's state (None: the parent's interval plus its timeout).
    dependency_holdoff_seconds: float | None = Field(default=None, ge=0, le=3600)
    broken_after_failures: int = Field(default=5, ge=1, le=1000)
    action_token_minutes: float = Field(default=240.0, gt=0, le=7 * 1440)
    keep_days: float = Field(default=30.0, gt=0, le=3650)

    @model_validator(mode="after")
    def _lease(self) -> Delivery:
        if self.lease_seconds <= self.timeout_seconds:
            raise ValueError("lease_seconds must be longer than timeout_seconds")
        return self


class Push(BaseModel):
    """Web Push: the VAPID contact and how long push services keep an undelivered message."""

    model_config = ConfigDict(extra="forbid")
    subject: str = Field(default="mailto:pocketnoc@localhost", pattern=r"^(mailto:\S+@\S+|https://\S+)$")
    ttl_seconds: int = Field(default=4 * 3600, ge=0, le=28 * 86400)


class Deadman(BaseModel):
    """Heartbeats to an outside watcher while monitoring works, and when the web app calls monitoring silent."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=2000)
    interval_seconds: float = Field(default=60.0, gt=0, le=86400)
    silent_after_seconds: float = Field(default=300.0, gt=0, le=86400)
    allow_unsafe: bool = False


class NotifyConfig(BaseModel):
    """Everything in channels.yaml."""

    model_config = ConfigDict(extra="forbid")
    channels: list[ChannelSpec] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    delivery: Delivery = Field(default_factory=Delivery)
    push: Push = Field(default_factory=Push)
    deadman: Deadman = Field(default_factory=Deadman)

    @model_validator(mode="after")
    def _references(self) -> NotifyConfig:
        for what, names in (("channel", [c.name for c in self.channels]), ("route", [r.name for r in self.routes]),
                            ("escalation", [e.name for e in self.escalations])):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {what} names: {', '.join(dupes)}")
        known = {e.name for e in self.escalations}
        for route in self.routes:
            if route.escalation is not None and route.escalation not in known:
                raise ValueError(f"route {route.name!r} names unknown escalation {route.escalation!r}")
        return self

    def effective_routes(self) -> list[Route]:
        """The routes in force: the file's, or one route sending everything to every user and shared channel."""
        return self.routes or [Route(name="default", users=["*"], channels=["*"])]

    def escalation(self, name: str | None) -> Escalation | None:
        """An escalation policy by name."""
        return next((e for e in self.escalations if e.name == name), None)


def load_notify_config(path: Path | None) -> NotifyConfig:
    """Read channels.yaml (None: defaults); ConfigError lists every problem as file:line."""
    if path is None:
        return NotifyConfig()
    def cross_checks(tree: LineDict, schema: list[str]) -> list[str]:
        return [] if not schema else _raw_problems(path, tree, any("duplicate" in p for p in schema))

    shape = "the notifications file is a mapping (channels, routes, escalations, ...)"
    config, tree = load_model(path, NotifyConfig, shape, cross_checks)
    if config is None:
        return NotifyConfig()
    refused = channel_problems(config)
    if refused:
        raise ConfigError([f"{path}:{line_of(tree, loc)}: {'.'.join(map(str, loc))}: {msg}" for loc, msg in refused])
    return config


def _raw_problems(path: Path, tree: LineDict, duplicates_reported: bool) -> list[str]:
    """The cross-checks that still can run on a file with schema errors: repeated names, refused channel URLs."""
    from server.notify.channels import ChannelError, build

    problems = []
    if not duplicates_reported:
        for what in ("channel", "route", "escalation"):
            problems += [f"{path}:{line}: duplicate {what} name {name!r} (first at line {first})"
                         for name, line, first in repeated(tree.get(f"{what}s"), "name")]  # fmt: skip
    channels = tree.get("channels")
    for index, item in enumerate(channels if isinstance(channels, list) else []):
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            try:
                build(item["url"], item.get("allow_unsafe") is True)
            except ChannelError as exc:
                problems.append(f"{path}:{line_of(tree, ('channels', index, 'url'))}: channels.{index}.url: {exc}")
    return problems


def channel_problems(config: NotifyConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """(location, why) of each channel URL the API would refuse: the same check (`channels.build`), policy included."""
    from server.notify.channels import ChannelError, build

    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, spec in enumerate(config.channels):
        try:
            build(spec.url, spec.allow_unsafe)
        except ChannelError as exc:
            problems.append((("channels", index, "url"), str(exc)))
    return problems

