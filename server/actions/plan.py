"""From an action, a device and validated parameters to exactly what will run, and whether it may run there."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from agents.base import Target
from server.actions.catalog import ActionSpec
from server.actions.template import ParamValue, render, render_oid
from server.config.settings import Settings
from server.polling.jobs import jobs_for, snmp_target
from server.store.devices import DeviceRow
from server.store.runs import DeviceInfo


@dataclass(frozen=True, slots=True)
class SetStep:
    """One SNMP SET of concrete varbinds: (oid, type, value, read back afterwards)."""

    varbinds: tuple[tuple[str, str, int | str, bool], ...]


@dataclass(frozen=True, slots=True)
class WaitStep:
    """A pause between SETs (bounce a port: down, wait, up)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Plan:
    """Exactly what a run does: the shell command, or the SNMP steps; and the verify command."""

    kind: str
    command: str | None = None
    steps: tuple[SetStep | WaitStep, ...] = ()
    verify_command: str | None = None

    @property
    def text(self) -> str:
        """What the user is shown before confirming, and what the audit log records."""
        if self.command is not None:
            return self.command
        lines = []
        for step in self.steps:
            if isinstance(step, WaitStep):
                lines.append(f"wait {step.seconds:g} s")
            else:
                for oid, kind, value, _read_back in step.varbinds:
                    shown = str(value) if kind == "integer" else repr(value)
                    lines.append(f"SET {oid} {kind.upper()} {shown}")
        return "\n".join(lines)

    @property
    def digest(self) -> str:
        """A short fingerprint of the text: a confirmation counts only for the command that was shown."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:20]


def build_plan(action: ActionSpec, values: dict[str, ParamValue]) -> Plan:
    """Fill the action's templates with validated values (shell-quoted for SSH); ValueError if an OID is bad."""
    verify = render(action.verify.ssh, values, quote=True) if action.verify.ssh else None
    if action.ssh is not None:
        return Plan("ssh", command=render(action.ssh, values, quote=True), verify_command=verify)
    steps: list[SetStep | WaitStep] = []
    for step in action.snmp or []:
        if step.wait is not None:
            steps.append(WaitStep(step.wait))
            continue
        varbinds = []
        for vb in step.set or []:
            value: int | str = vb.value
            if isinstance(value, str):
                value = render(value, values, quote=False)
                if vb.type == "integer":
                    value = int(value)
            varbinds.append((render_oid(vb.oid, values), vb.type, value, vb.read_back))
        steps.append(SetStep(tuple(varbinds)))
    return Plan("snmp", steps=tuple(steps), verify_command=verify)


def why_not(action: ActionSpec, device: DeviceInfo) -> str | None:
    """Why the action does not apply to the device, or None when it does."""
    want = action.applies_to
    name = device.row.name
    if want.kinds and device.kind not in want.kinds:
        return f"{action.id} applies to {', '.join(want.kinds)} devices; {name} is {device.kind or 'of unknown kind'}"
    if want.tags and not set(want.tags) & set(device.row.tags):
        return f"{action.id} applies to devices tagged {', '.join(want.tags)}; {name} has none of them"
    spec = device.row.spec
    if action.kind == "ssh" and spec.ssh is None:
        return f"{action.id} runs over SSH and {name} has no SSH access configured"
    if action.kind == "snmp" and (spec.snmp is None or spec.snmp.write is None):
        return f"{action.id} sends SNMP SETs and {name} has no SNMP write credentials (snmp.write)"
    return None


def ssh_target(row: DeviceRow, settings: Settings) -> Target:
    """The same SSH target the poller uses: pinned and enrolled host keys, credentials, timeouts."""
    for job in jobs_for(replace(row, enabled=True), settings):
        if job.kind == "ssh":
            return job.target
    raise ValueError(f"{row.name} has no SSH access configured")


def snmp_write_target(row: DeviceRow, settings: Settings) -> Target:
    """A target carrying the device's SNMP write credentials (never the read ones)."""
    s = row.spec.snmp
    if s is None or s.write is None:
        raise ValueError(f"{row.name} has no SNMP write credentials")
    return snmp_target(row, settings, s, s.write)
