"""From an action, a device and validated parameters to exactly what will run, and whether it may run there."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

from agents.base import Target
from server.actions.catalog import ActionSpec
from server.actions.targets import Choice, DeviceView, choices_for, from_labels
from server.actions.template import ParamValue, placeholders, render, render_oid
from server.config.settings import Settings
from server.polling.jobs import jobs_for, snmp_target
from server.store.devices import DeviceRow
from server.store.runs import DeviceInfo


@dataclass(frozen=True, slots=True)
class SetStep:
    """One SNMP SET of concrete varbinds: (oid, type, value, read back afterwards)."""

    varbinds: tuple[tuple[str, str, int | str, bool], ...]
    names: tuple[str, ...] = ()  # per varbind: what it does in words ("Gi1/0/17: admin status → down"), or ""


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
                for n, (oid, kind, value, _read_back) in enumerate(step.varbinds):
                    shown = str(value) if kind == "integer" else repr(value)
                    said = step.names[n] if n < len(step.names) else ""
                    lines.append(f"SET {oid} {kind.upper()} {shown}" + (f"  ({said})" if said else ""))
        return "\n".join(lines)

    @property
    def digest(self) -> str:
        """A short fingerprint of the text: a confirmation counts only for the command that was shown."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:20]


# Objects whose SETs a preview can say in words: OID prefix -> (what, {value: meaning}).
KNOWN_OBJECTS: dict[str, tuple[str, dict[int, str]]] = {
    "1.3.6.1.2.1.2.2.1.7": ("admin status", {1: "up", 2: "down", 3: "testing"}),
}


def _in_words(oid_template: str, value: int | str, chosen: Mapping[str, Choice]) -> str:
    """'Gi1/0/17: admin status → down' for a SET on a chosen thing, or ''."""
    names = [chosen[n].name for n in placeholders(oid_template) if n in chosen]
    if not names:
        return ""
    prefix = oid_template.split(".{", 1)[0]
    what, meanings = KNOWN_OBJECTS.get(prefix, ("set", {}))
    shown = meanings.get(value, str(value)) if isinstance(value, int) else repr(value)
    return f"{', '.join(names)}: {what} → {shown}"


def build_plan(action: ActionSpec, values: dict[str, ParamValue], chosen: Mapping[str, Choice] | None = None) -> Plan:
    """Fill the action's templates with validated values (shell-quoted for SSH); ValueError if an OID is bad.

    `chosen` (parameter -> the thing on the device) lets the SNMP preview say what each SET does by name."""
    verify = render(action.verify.ssh, values, quote=True) if action.verify.ssh else None
    if action.ssh is not None:
        return Plan("ssh", command=render(action.ssh, values, quote=True), verify_command=verify)
    steps: list[SetStep | WaitStep] = []
    for step in action.snmp or []:
        if step.wait is not None:
            steps.append(WaitStep(step.wait))
            continue
        varbinds, names = [], []
        for vb in step.set or []:
            value: int | str = vb.value
            if isinstance(value, str):
                value = render(value, values, quote=False)
                if vb.type == "integer":
                    value = int(value)
            varbinds.append((render_oid(vb.oid, values), vb.type, value, vb.read_back))
            names.append(_in_words(vb.oid, value, chosen or {}))
        steps.append(SetStep(tuple(varbinds), tuple(names)))
    return Plan("snmp", steps=tuple(steps), verify_command=verify)


def device_view(device: DeviceInfo) -> DeviceView:
    """What target lists need of a device."""
    ports = device.row.spec.ports
    return DeviceView(
        device.row.name,
        device.row.address,
        device.parent,
        device.tables,
        ports.management if ports else None,
        ports.uplink if ports else None,
    )


def targets_of(device: DeviceInfo, action: ActionSpec) -> dict[str, list[Choice]]:
    """For each parameter of the action that names a thing on the device: what the device has."""
    view = device_view(device)
    return {p.name: choices_for(p.type, view) for p in action.params if p.is_target}


def prefill(action: ActionSpec, targets: Mapping[str, list[Choice]], labels: Mapping[str, str]) -> dict[str, str]:
    """Parameters filled in from an alert's labels (interface-down names its ifIndex): form values by name."""
    out: dict[str, str] = {}
    for p in action.params:
        if p.is_target:
            found = from_labels(p.type, targets.get(p.name, []), labels)
            if found is not None:
                out[p.name] = str(found.value)
    return out


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
