"""Devices: inventory rows, their secrets (sealed), and the config-file sync."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from server.config.inventory import DeviceSpec
from server.keys.secretbox import SecretBox
from server.store import hostkeys
from server.store.db import SYNC_DEVICES, serialise_sync
from server.store.jsontypes import JsonObject, JsonValue
from server.store.schema import device_status, devices

# Dotted fields sit in a sub-section ("write.community" is snmp.write.community).
SECRET_FIELDS = {
    "snmp": ("community", "auth_key", "priv_key", "write.community", "write.auth_key", "write.priv_key"),
    "ssh": ("password", "key_passphrase"),
}


class DeviceConflict(Exception):
    """A name clash, a missing parent, or an edit of a device the config file manages."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device as the poller and views need it: spec with secrets joined in."""

    id: int
    name: str
    address: str
    kind: str | None
    tags: list[str]
    parent_id: int | None
    interval: int
    enabled: bool
    source: str
    spec: DeviceSpec
    enrolled_keys: tuple[str, ...] = ()


def _container(data: JsonObject, path: list[str]) -> JsonObject | None:
    """The dict at `path` inside data, or None when a part is missing."""
    node: JsonObject | JsonValue = data
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def _secret_paths() -> list[tuple[str, list[str], str]]:
    """(stored key, containing path, field) for every secret field."""
    out = []
    for section, fields in SECRET_FIELDS.items():
        for field in fields:
            *inner, name = field.split(".")
            out.append((f"{section}.{field}", [section, *inner], name))
    return out


def split_secrets(spec: DeviceSpec) -> tuple[JsonObject, JsonObject]:
    """The spec as JSON without secrets, and the secrets alone ("snmp.community": ..., "snmp.write.community": ...)."""
    public: JsonObject = spec.model_dump(mode="json", exclude_none=True)
    secrets: JsonObject = {}
    for key, path, name in _secret_paths():
        part = _container(public, path)
        if part is not None and name in part:
            secrets[key] = part.pop(name)
    return public, secrets


def join_secrets(public: dict[str, Any], secrets: dict[str, Any]) -> DeviceSpec:
    """Rebuild the full spec from its public JSON and its secrets."""
    data = copy.deepcopy(public)
    for key, value in secrets.items():
        *path, name = key.split(".")
        part = _container(data, path)
        if part is not None:
            part[name] = value
    return DeviceSpec.model_validate(data)


def public_spec(public: JsonObject, secret_keys: set[str]) -> JsonObject:
    """The spec for API output: secrets shown only as '<field>_set': true."""
    out = copy.deepcopy(public)
    for key, path, name in _secret_paths():
        part = _container(out, path)
        if part is not None:
            part[f"{name}_set"] = key in secret_keys
    return out


def _row(record: Any, box: SecretBox, keys: tuple[str, ...] = ()) -> DeviceRow:
    return DeviceRow(
        id=record.id,
        name=record.name,
        address=record.address,
        kind=record.kind,
        tags=list(record.tags or []),
        parent_id=record.parent_id,
        interval=record.interval,
        enabled=bool(record.enabled),
        source=record.source,
        spec=join_secrets(record.spec or {}, box.open(record.secrets)),
        enrolled_keys=keys,
    )


def load_devices(conn: Connection, box: SecretBox, enabled_only: bool = False) -> list[DeviceRow]:
    """Every device with its secrets decrypted (for the poller, never for output)."""
    query = select(devices).order_by(devices.c.id)
    if enabled_only:
        query = query.where(devices.c.enabled.is_(True))
    keys = hostkeys.enrolled(conn)
    return [_row(r, box, keys.get(r.id, ())) for r in conn.execute(query)]


def load_device(conn: Connection, box: SecretBox, device_id: int) -> DeviceRow | None:
    """One device with secrets, or None."""
    record = conn.execute(select(devices).where(devices.c.id == device_id)).first()
    return _row(record, box, hostkeys.enrolled(conn, device_id).get(device_id, ())) if record else None


def _parent_id(conn: Connection, spec: DeviceSpec) -> int | None:
    if not spec.parent:
        return None
    found = conn.execute(select(devices.c.id).where(devices.c.name == spec.parent)).scalar()
    if found is None:
        raise DeviceConflict(f"parent {spec.parent!r} is not a device")
    return int(found)


def _values(conn: Connection, spec: DeviceSpec, box: SecretBox, default_interval: int) -> dict[str, Any]:
    public, secrets = split_secrets(spec)
    return {
        "name": spec.name,
        "address": spec.address,
        "kind": spec.kind,
        "tags": spec.tags,
        "parent_id": _parent_id(conn, spec),
        "interval": spec.interval or default_interval,
        "enabled": spec.enabled,
        "spec": public,
        "secrets": box.seal(secrets),
        "updated_at": time.time(),
    }


def create_device(conn: Connection, spec: DeviceSpec, box: SecretBox, default_interval: int, source: str = "api") -> int:
    """Insert a device and its empty status row; a taken name raises DeviceConflict."""
    if conn.execute(select(devices.c.id).where(devices.c.name == spec.name)).first():
        raise DeviceConflict(f"a device named {spec.name!r} already exists")
    values = _values(conn, spec, box, default_interval)
    now = values["updated_at"]
    result = conn.execute(insert(devices).values(**values, source=source, created_at=now))
    device_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(insert(device_status).values(device_id=device_id, state="unknown", state_since=now))
    return device_id


def update_device(conn: Connection, device_id: int, spec: DeviceSpec, box: SecretBox, default_interval: int) -> None:
    """Replace a device's spec (secrets included; the caller merges omitted secrets first)."""
    clash = conn.execute(select(devices.c.id).where(devices.c.name == spec.name, devices.c.id != device_id)).first()
    if clash:
        raise DeviceConflict(f"a device named {spec.name!r} already exists")
    if spec.parent:
        parent = conn.execute(select(devices.c.id).where(devices.c.name == spec.parent)).scalar()
        if parent == device_id or _ancestors(conn, parent).__contains__(device_id):
            raise DeviceConflict("that parent would make a loop")
    conn.execute(update(devices).where(devices.c.id == device_id).values(**_values(conn, spec, box, default_interval)))


def _ancestors(conn: Connection, device_id: int | None) -> set[int]:
    seen: set[int] = set()
    while device_id is not None and device_id not in seen:
        seen.add(device_id)
        device_id = conn.execute(select(devices.c.parent_id).where(devices.c.id == device_id)).scalar()
    return seen


def delete_device(conn: Connection, device_id: int) -> bool:
    """Remove a device and (by cascade) its status, series and samples."""
    return bool(conn.execute(delete(devices).where(devices.c.id == device_id)).rowcount)


def _unchanged(conn: Connection, found: Any, spec: DeviceSpec, box: SecretBox, default_interval: int) -> bool:
    """Whether a stored config device already is what the file says (spec, secrets, interval, parent, source)."""
    if found.source != "config":
        return False
    row = load_device(conn, box, found.id)
    return (
        row is not None
        and row.spec == spec
        and row.interval == (spec.interval or default_interval)
        and row.parent_id == _parent_id(conn, spec)
    )


def sync_config_devices(conn: Connection, specs: list[DeviceSpec], box: SecretBox, default_interval: int) -> dict[str, int]:
    """Make the config-managed devices match the file: create, update, remove; API devices are left alone.

    Serve processes starting together on one PostgreSQL database sync one after the other (the later one finds the
    devices the first created), not both inserting the same names (a unique violation that ended one start-up)."""
    serialise_sync(conn, SYNC_DEVICES)
    existing = {r.name: r for r in conn.execute(select(devices.c.id, devices.c.name, devices.c.source))}
    wanted = {s.name for s in specs}
    counts = {"created": 0, "updated": 0, "removed": 0}
    for name, record in existing.items():
        if record.source == "config" and name not in wanted:
            delete_device(conn, record.id)
            counts["removed"] += 1
    # Parents first so parent names resolve.
    pending = list(specs)
    placed: set[str] = {n for n, r in existing.items() if r.source != "config"}
    while pending:
        progress = False
        for spec in list(pending):
            if spec.parent and spec.parent not in placed and spec.parent in wanted:
                continue
            found = existing.get(spec.name)
            if found is None:
                create_device(conn, spec, box, default_interval, source="config")
                counts["created"] += 1
            elif not _unchanged(conn, found, spec, box, default_interval):  # a restart with the same file updates nothing
                update_device(conn, found.id, spec, box, default_interval)
                conn.execute(update(devices).where(devices.c.id == found.id).values(source="config"))
                counts["updated"] += 1
            placed.add(spec.name)
            pending.remove(spec)
            progress = True
        if not progress:
            raise DeviceConflict("parent loop among: " + ", ".join(s.name for s in pending))
    return counts


def count_devices(conn: Connection) -> int:
    """How many devices exist."""
    return int(conn.execute(select(func.count()).select_from(devices)).scalar() or 0)


def source_and_name(conn: Connection, device_id: int) -> tuple[str, str] | None:
    """Where a device is managed ("config" or "api") and its name; None when there is no such device."""
    row = conn.execute(select(devices.c.source, devices.c.name).where(devices.c.id == device_id)).first()
    return None if row is None else (str(row.source), str(row.name))
