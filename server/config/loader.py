"""Load and validate the YAML config (settings + inventory + includes), reporting every error by file:line."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.config.inventory import DeviceSpec, parent_cycles, timeout_problems
from server.config.settings import Settings
from server.config.yamlsrc import (
    ConfigError,
    LineDict,
    LineList,
    include_target,
    line_of,
    load_yaml,
    shown_key,
    validation_problems,
)

TOP_KEYS = {"settings", "include", "devices"}
INCLUDE_KEYS = {"devices"}
MAX_INCLUDE_DEPTH = 4


@dataclass
class LoadedConfig:
    """What a config file (and its includes) declares."""

    path: Path | None
    settings: dict[str, Any] = field(default_factory=dict)
    devices: list[DeviceSpec] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)  # device name -> "file:line"
    declared: dict[str, str] = field(default_factory=dict)  # every named entry, valid or not -> "file:line"
    parent_refs: list[tuple[str, str, str]] = field(default_factory=list)  # ("file:line", device, parent)


def _raw_str(raw: object, key: str) -> str | None:
    """A string field of an entry that did not validate (for the cross-checks), else None."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else None


def _empty() -> LineList:
    empty = LineList()
    empty.item_lines = []
    return empty


def _default_interval(config: LoadedConfig) -> int:
    """The interval of devices that set none: the file's settings.default_interval, else the built-in default."""
    value = config.settings.get("default_interval")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 5:
        return value
    default = Settings.model_fields["default_interval"].default
    return int(default)


def _load_file(path: Path, allowed: set[str], config: LoadedConfig, problems: list[str], depth: int) -> None:
    tree = load_yaml(path)
    if tree is None:
        return
    if not isinstance(tree, LineDict):
        problems.append(f"{path}:1: the file must be a mapping with keys {', '.join(sorted(allowed))}")
        return
    for key in tree:
        if key not in allowed:
            problems.append(f"{path}:{tree.key_lines[key]}: unknown key {shown_key(key)} (allowed: {', '.join(sorted(allowed))})")
    if "settings" in tree:
        values = tree["settings"]
        if not isinstance(values, LineDict):
            problems.append(f"{path}:{tree.key_lines['settings']}: settings must be a mapping")
        else:
            try:
                Settings.model_validate({k: v for k, v in values.items() if k != "data_dir"} | {"data_dir": "."})
            except ValidationError as exc:
                problems.extend(validation_problems(path, tree, exc, ("settings",)))
            for key in ("config",):
                if key in values:
                    problems.append(f"{path}:{values.key_lines[key]}: settings.{key} cannot be set in a file")
            # file paths are relative to the config file
            for key in ("rules_file", "secret_key_file", "actions_file", "channels_file", "directories_file"):
                if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                    values[key] = str((path.parent / values[key]).resolve())
            config.settings.update(values)
    devices = tree.get("devices")
    if devices is None:
        devices = _empty()
    elif not isinstance(devices, LineList):
        problems.append(f"{path}:{tree.key_lines.get('devices', 1)}: devices must be a list")
        devices = _empty()
    for index, raw in enumerate(devices):
        where = f"{path}:{devices.item_lines[index]}"
        spec: DeviceSpec | None = None
        try:
            spec = DeviceSpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(validation_problems(path, tree, exc, ("devices", index)))
        if spec is not None:
            late = timeout_problems(spec, _default_interval(config))
            for loc, msg in late:
                full = ("devices", index, *loc)
                problems.append(f"{path}:{line_of(tree, full)}: {'.'.join(map(str, full))}: {msg}")
            if late:
                spec = None
        # Names and parents are cross-checked even for an entry with errors: one run reports everything.
        name = spec.name if spec is not None else _raw_str(raw, "name")
        if name is None:
            continue
        if name in config.declared:
            problems.append(f"{where}: duplicate device name {name!r} (first at {config.declared[name]})")
            continue
        config.declared[name] = where
        parent = spec.parent if spec is not None else _raw_str(raw, "parent")
        if parent:
            config.parent_refs.append((where, name, parent))
        if spec is not None:
            config.origins[spec.name] = where
            config.devices.append(spec)
    includes = tree.get("include")
    if includes is None:
        return
    if not isinstance(includes, LineList) or not all(isinstance(i, str) for i in includes):
        problems.append(f"{path}:{tree.key_lines.get('include', 1)}: include must be a list of file paths")
        return
    for index, name in enumerate(includes):
        if depth >= MAX_INCLUDE_DEPTH:
            problems.append(f"{path}:{includes.item_lines[index]}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
            continue
        try:
            child = include_target(path, name, includes.item_lines[index])
        except ConfigError as exc:
            problems.extend(exc.problems)
            continue
        try:
            _load_file(child, INCLUDE_KEYS | {"include"}, config, problems, depth + 1)
        except ConfigError as exc:
            # A missing or unreadable file has no line of its own: point at the include that names it.
            where = f"{path}:{includes.item_lines[index]}: include"
            problems.extend(f"{where} {p}" if p.startswith(f"{child}: ") else p for p in exc.problems)


def load_config(path: Path | None) -> LoadedConfig:
    """Read a config file and everything it includes; raise ConfigError listing all problems."""
    config = LoadedConfig(path=path)
    if path is None:
        return config
    problems: list[str] = []
    _load_file(path, TOP_KEYS, config, problems, 0)
    for where, _name, parent in config.parent_refs:
        if parent not in config.declared:
            problems.append(f"{where}: parent {parent!r} is not a device in the inventory")
    for name in parent_cycles(config.devices):
        problems.append(f"{config.origins[name]}: device {name!r} is part of a parent loop")
    # The files the settings name are checked the same way the server reads them at start.
    from server.actions.catalog import load_catalog
    from server.alerts.rules import load_rules
    from server.directory.config import load_directories
    from server.notify.config import load_notify_config

    loaders: tuple[tuple[str, Callable[[Path], object]], ...] = (
        ("rules_file", load_rules),
        ("actions_file", load_catalog),
        ("channels_file", load_notify_config),
        ("directories_file", load_directories),
    )
    for key, loader in loaders:
        named = config.settings.get(key)
        if isinstance(named, str):
            try:
                loader(Path(named))
            except ConfigError as exc:
                problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return config
