"""From a device's spec to the checks to run: one CheckJob per (device, check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from agents.base import SnmpCredentials, SshCredentials, Target
from server.config.inventory import SnmpSpec, SnmpWriteSpec
from server.config.settings import Settings
from server.store.devices import DeviceRow


class PollNow(NamedTuple):
    """What a 'poll now' of one device did: its scheduled checks; how many were polled and stored; how many were
    still running when the one who asked stopped waiting (a worker waiting for a check in flight: they may be polled
    and stored later); how many no worker took (cancelled; or the queue could not be reached at all)."""

    checks: int
    ran: int
    pending: int = 0
    untaken: int = 0

    @property
    def outcome(self) -> str:
        """The one word for it (the page's ?done=, the API's status): none, pending, untaken, not-polled, partly,
        polled."""
        if not self.checks:
            return "none"
        if self.pending:
            return "pending"
        if not self.ran:
            return "untaken" if self.untaken else "not-polled"
        return "polled" if self.ran == self.checks else "partly"


@dataclass(frozen=True, slots=True)
class CheckJob:
    """One scheduled check of one device."""

    device_id: int
    device: str
    check: str
    kind: str
    interval: int
    target: Target

    @property
    def key(self) -> str:
        """Stable id for scheduling and de-duplication."""
        return f"{self.device_id}:{self.check}"

    @property
    def time_limit(self) -> float:
        """How long one poll of it may last: its interval, within 5 s to 2 min."""
        return max(5.0, min(float(self.interval), 120.0))


def snmp_target(row: DeviceRow, settings: Settings, s: SnmpSpec, creds: SnmpSpec | SnmpWriteSpec) -> Target:
    """The device's SNMP target (`s`) with `creds`: its read block itself, or its write block."""
    snmp = SnmpCredentials(
        version=s.version,
        community=creds.community or "",
        user=creds.user or "",
        auth_protocol=creds.auth_protocol,
        auth_key=creds.auth_key,
        priv_protocol=creds.priv_protocol,
        priv_key=creds.priv_key,
        context=creds.context,
    )
    retries = settings.snmp_retries if s.retries is None else s.retries
    return Target(row.address, s.port, row.name, snmp=snmp, timeout=s.timeout or settings.snmp_timeout, retries=retries)


def ssh_credentials(row: DeviceRow) -> SshCredentials | None:
    """The device's SSH login with its pinned (and enrolled) host keys, if it has an ssh block."""
    h = row.spec.ssh
    if h is None:
        return None
    return SshCredentials(
        user=h.user,
        password=h.password,
        key_file=h.key_file,
        key_passphrase=h.key_passphrase,
        host_keys=tuple(dict.fromkeys([*h.host_key, *row.enrolled_keys])),
    )


def jobs_for(row: DeviceRow, settings: Settings) -> list[CheckJob]:
    """The checks a device has: SNMP, SSH and ping/TCP/HTTP; a bare address gets a ping."""
    spec = row.spec
    jobs: list[CheckJob] = []
    if not row.enabled:
        return jobs

    def add(check: str, kind: str, target: Target, interval: int | None = None) -> None:
        jobs.append(CheckJob(row.id, row.name, check, kind, interval or row.interval, target))

    if spec.snmp:
        add("snmp", "snmp", snmp_target(row, settings, spec.snmp, spec.snmp))
    creds_ssh = ssh_credentials(row)
    if spec.ssh and creds_ssh:
        h = spec.ssh
        commands = [c.model_dump() for c in h.commands]
        add(
            "ssh",
            "ssh",
            Target(row.address, h.port, row.name, ssh=creds_ssh, timeout=h.timeout or 10.0, options={"commands": commands}),
        )
    for c in spec.checks:
        options = c.model_dump(exclude={"type", "name", "interval", "options"}, exclude_none=True)
        if c.is_plugin:
            options = {"timeout": c.timeout, **({"port": c.port} if c.port else {}), **c.options}
        if c.type == "nagios":  # the allowed plug-in directories come from the settings, never the inventory
            options["plugin_dirs"] = list(settings.plugin_dirs)
            if c.options.get("via") == "ssh" and spec.ssh and creds_ssh:
                target = Target(row.address, spec.ssh.port, row.name, ssh=creds_ssh, timeout=c.timeout, options=options)
                add(c.check_name, c.type, target, c.interval)
                continue
        if not c.expected_status:
            options.pop("expected_status", None)
        address, port = row.address, c.port or 0
        if c.type == "http" and c.url:
            parts = urlsplit(c.url)
            address = parts.hostname or row.address
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        add(c.check_name, c.type, Target(address, port, row.name, timeout=c.timeout, retries=0, options=options), c.interval)
    if not jobs:
        add("ping", "ping", Target(row.address, 0, row.name, timeout=2.0, retries=0, options={"count": 3}))
    return jobs
