"""Device use cases shared by the JSON API and the inventory pages: add, change (merging secrets), remove."""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from server.auth.access import Principal
from server.auth.stepup import StepUpRequired, is_fresh
from server.config.inventory import DeviceSpec, FieldError, error_list, timeout_problems
from server.polling import pipeline
from server.polling.jobs import PollNow
from server.runtime import Services
from server.services.bodies import DevicePatch
from server.services.errors import Conflict, NotFound, ServiceError
from server.store import accounts
from server.store.devices import DeviceConflict, create_device, delete_device, load_device, source_and_name, update_device


class DeviceInvalid(ServiceError):
    """A device spec that does not validate; `errors` has one entry per field (loc, msg, type), as pydantic's."""

    status = 422

    def __init__(self, errors: list[FieldError]) -> None:
        text = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in errors)
        super().__init__(text, detail=errors)
        self.errors = errors


def refuse_late_timeouts(svc: Services, spec: DeviceSpec, prefix: tuple[str, ...]) -> None:
    """Refuse a timeout that would not end before the check's next turn (as the config file refuses it)."""
    late = timeout_problems(spec, svc.settings.default_interval)
    if late:
        raise DeviceInvalid([{"loc": [*prefix, *map(str, loc)], "msg": msg, "type": "value_error"} for loc, msg in late])


def add_device(svc: Services, p: Principal, ip: str, spec: DeviceSpec) -> int:
    """Add a device (secrets stored encrypted), audit it and schedule its checks; returns its id."""
    refuse_late_timeouts(svc, spec, ("body",))
    try:
        with svc.engine.begin() as conn:
            device_id = create_device(conn, spec, svc.box, svc.settings.default_interval)
            accounts.write_audit(conn, p.user, "device.create", spec.name, {"address": spec.address}, ip)
    except DeviceConflict as exc:
        raise Conflict(str(exc)) from None
    pipeline.reschedule(svc)
    return device_id


def _managed_name(svc: Services, device_id: int) -> str:
    """The name of an API-managed device; NotFound, or Conflict for one the config file manages."""
    with svc.reader.connect() as conn:
        found = source_and_name(conn, device_id)
    if found is None:
        raise NotFound("no such device")
    source, name = found
    if source == "config":
        raise Conflict(f"{name} is managed by the config file; change it there")
    return name


def patch_device(svc: Services, p: Principal, ip: str, device_id: int, body: DevicePatch) -> None:
    """Change some fields; omitted secrets keep their stored values; `snmp`, `ssh` (and `snmp.write`) merge one level.

    Changing SNMP or SSH access (credentials, host keys, or the address of a device that has them) needs a fresh
    second factor (step-up), as a password does."""
    changes = body.model_dump(exclude_unset=True)
    _managed_name(svc, device_id)
    with svc.reader.connect() as conn:
        row = load_device(conn, svc.box, device_id)
    if row is None:
        raise NotFound("no such device")
    current = row.spec.model_dump(mode="json", exclude_none=True)
    merged = {**current, **changes}
    for section in ("snmp", "ssh"):
        if isinstance(changes.get(section), dict) and isinstance(current.get(section), dict):
            merged[section] = {**current[section], **changes[section]}
            # snmp.write too: setting only its community keeps the rest; `"write": null` removes the block.
            old, new = current[section].get("write"), changes[section].get("write")
            if isinstance(old, dict) and isinstance(new, dict):
                merged[section]["write"] = {**old, **new}
    try:
        spec = DeviceSpec.model_validate(merged)
    except ValidationError as exc:
        raise DeviceInvalid(error_list(exc.errors())) from None
    refuse_late_timeouts(svc, spec, ())
    # Changing a device's credentials or pinned host keys asks for a fresh second factor; so does moving a device
    # that has credentials: its next poll would send them (an SNMP community in clear) to the new address.
    moved_with_secrets = spec.address != row.spec.address and (row.spec.snmp is not None or row.spec.ssh is not None)
    if (spec.snmp != row.spec.snmp or spec.ssh != row.spec.ssh or moved_with_secrets) and not is_fresh(p, svc.settings):
        raise StepUpRequired()
    try:
        with svc.engine.begin() as conn:
            update_device(conn, device_id, spec, svc.box, svc.settings.default_interval)
            accounts.write_audit(conn, p.user, "device.update", spec.name, {"fields": sorted(changes)}, ip)
    except DeviceConflict as exc:
        raise Conflict(str(exc)) from None
    pipeline.reschedule(svc)


def remove_device(svc: Services, p: Principal, ip: str, device_id: int) -> None:
    """Delete an API-managed device with its history."""
    name = _managed_name(svc, device_id)
    with svc.engine.begin() as conn:
        delete_device(conn, device_id)
        accounts.write_audit(conn, p.user, "device.delete", name, {}, ip)
    pipeline.reschedule(svc, removed_device=device_id)


async def poll_now(svc: Services, device_id: int) -> PollNow | None:
    """'Poll now' of one device, as the API, the page and an action's verification ask it: what was polled and
    stored (None: this process does not poll). A result polled but not stored within 10 s counts as pending."""
    if svc.dispatcher is None or svc.writer is None:
        return None
    done = await svc.dispatcher.run_now(device_id)
    if not await asyncio.to_thread(svc.writer.flush, 10.0) and done.ran:
        return done._replace(ran=0, pending=done.pending + done.ran)
    return done
