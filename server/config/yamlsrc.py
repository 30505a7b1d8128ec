"""The one loader of every config file (settings + inventory, rules, actions, channels): YAML that remembers
where every value came from, so errors name file and line, and the rules every such file obeys.

- A config file must be a regular file (not a device, pipe or directory) of at most MAX_CONFIG_BYTES, counted
  while reading (a file's st_size can lie: /dev/zero has none).
- YAML may nest at most MAX_YAML_DEPTH levels (deeper gives file:line, not a RecursionError), and aliases may
  add at most MAX_ALIAS_VALUES values to what the file spells out (a "billion laughs" file is refused, not expanded).
- `include:` names only files in the including file's directory or below it (see include_target).
- Messages never echo the file's contents: values are never shown, and keys only when they look like
  config keys (lowercase words), so a stray secret in a file does not end up on a terminal or in a log.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
MAX_CONFIG_BYTES = 8 * 1024 * 1024
MAX_YAML_DEPTH = 64
MAX_ALIAS_VALUES = 100_000
_SHOWABLE_KEY = re.compile(r"[a-z][a-z0-9_-]{0,39}")


class ConfigError(Exception):
    """One or more problems in configuration, each as 'file:line: message'."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class LineDict(dict[Any, Any]):
    """A mapping that knows its own line and each key's line."""

    line: int = 0
    key_lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence that knows its own line and each item's line."""

    line: int = 0
    item_lines: list[int]


def shown_key(key: Any) -> str:
    """A key as messages may show it: quoted when it looks like a config key, else a placeholder (it may be a secret)."""
    if isinstance(key, int) and not isinstance(key, bool):
        return str(key)
    if isinstance(key, str) and _SHOWABLE_KEY.fullmatch(key):
        return repr(key)
    return "(a key not shown)"


def shown_loc(tree: Any, loc: Sequence[Any]) -> str:
    """A validation error's location, `devices.0.snmp`; a part that is a key of the file only if it looks like a key."""
    parts: list[str] = []
    node = tree
    for part in loc:
        if isinstance(node, dict) and part in node:
            hidden = isinstance(part, str) and not _SHOWABLE_KEY.fullmatch(part)
            parts.append("(a key not shown)" if hidden else str(part))
            node = node[part]
            continue
        parts.append(str(part))  # a field name or a tag from the model, not from the file
        node = node[part] if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) else None
    return ".".join(parts)


class _Loader(yaml.SafeLoader):
    """SafeLoader that records lines, refuses duplicate keys and nesting deeper than MAX_YAML_DEPTH."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node: yaml.Node | None = super().get_single_node()
        if node is not None:
            _refuse_alias_bombs(node)
        return node


def _refuse_alias_bombs(root: yaml.Node) -> None:
    """ComposerError when aliases make the document more than MAX_ALIAS_VALUES values larger than it is written."""
    sizes: dict[int, int] = {}  # node -> its values with every alias expanded; each node is counted once (memo)
    nodes: dict[int, yaml.Node] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a recursive alias counts as one value here; the constructor refuses it with its line
        nodes[key] = node
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        sizes[key] = 1 + sum(size(child) for child in children)
        return sizes[key]

    if size(root) - len(sizes) <= MAX_ALIAS_VALUES:
        return
    culprit = min((n for k, n in nodes.items() if sizes[k] > MAX_ALIAS_VALUES), key=lambda n: sizes[id(n)])
    raise yaml.composer.ComposerError(
        None, None, f"aliases expand this value to more than {MAX_ALIAS_VALUES} values", culprit.start_mark
    )


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown_key(key)}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)

def read_config_bytes(path: Path) -> bytes:
    """The bytes of a config file: a regular file, its size counted while reading; ConfigError otherwise."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)  # non-blocking: opening a FIFO must not wait for a writer
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        what = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise ConfigError([f"{path}: not a regular file ({what}); a config file must be a plain file"])
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read ({exc.strerror})"]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError([f"{path}: file is larger than {MAX_CONFIG_BYTES // 1024 // 1024} MB"])
    return data


def load_yaml(path: Path) -> Any:
    """Parse one YAML file; any failure becomes a ConfigError naming the file and line (never its contents)."""
    raw = read_config_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([f"{path}:{line}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([f"{path}{where}: {problem}"]) from None
    except yaml.YAMLError:
        raise ConfigError([f"{path}: invalid YAML"]) from None
    except RecursionError:  # a last guard: MAX_YAML_DEPTH keeps the composer far from the limit
        raise ConfigError([f"{path}: nested too deeply"]) from None


def include_target(including: Path, name: str, line: int) -> Path:
    """The file an `include:` entry names: only in the including file's directory or below it (after symlinks)."""
    base = including.resolve().parent
    target = (base / name).resolve()
    if not target.is_relative_to(base):
        raise ConfigError(
            [f"{including}:{line}: include {name!r} is outside {base}; an included file must be in that directory or below it"]
        )
    return target


def validation_problems(path: Path, tree: Any, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    """A pydantic error as 'file:line: where: message' lines, patterns in words, keys shown only when they look like keys."""
    from server.config.inventory import error_message

    problems: list[str] = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(err["loc"])
        where = shown_loc(tree, loc) or "file"
        msg = "unknown key" if err["type"] == "extra_forbidden" else error_message(err)
        problem = f"{path}:{line_of(tree, loc) if loc else 1}: {where}: {msg}"
        if problem not in problems:
            problems.append(problem)
    return problems


def load_model(
    path: Path, model: type[M], shape: str, cross_checks: Callable[[LineDict, list[str]], list[str]] | None = None
) -> tuple[M | None, LineDict | None]:
    """One YAML file validated as `model`: (the model, or None for an empty file; the line-aware tree).

    `shape` says what the file must be ("an actions file is a mapping with 'actions:'") when it is not a mapping.
    `cross_checks(tree, schema_problems)` run on the raw tree (duplicate names, ...) whether or not the schema held,
    so one run lists every problem.
    """
    tree = load_yaml(path)
    if tree is None:
        return None, None
    if not isinstance(tree, LineDict):
        raise ConfigError([f"{path}:1: {shape}"])
    parsed: M | None = None
    problems: list[str] = []
    try:
        parsed = model.model_validate(tree)
    except ValidationError as exc:
        problems = validation_problems(path, tree, exc)
    problems += cross_checks(tree, problems) if cross_checks is not None else []
    if problems or parsed is None:
        raise ConfigError(problems)
    return parsed, tree


def line_of(node: object, loc: Sequence[object]) -> int:
    """The line of the deepest node of `loc` that exists in the parsed YAML tree."""
    line = getattr(node, "line", 0)
    for part in loc:
        if isinstance(node, LineDict) and part in node:
            line = node.key_lines.get(part, line)
            node = node[part]
        elif isinstance(node, LineList) and isinstance(part, int) and 0 <= part < len(node):
            line = node.item_lines[part]
            node = node[part]
        else:
            break
    return line


def repeated(items: object, key: str) -> list[tuple[str, int, int]]:
    """(name, line, first line) for each list item whose `key` repeats an earlier item's — read from the raw YAML,
    so the check runs even when items fail validation."""
    if not isinstance(items, LineList):
        return []
    seen: dict[str, int] = {}
    found = []
    for index, item in enumerate(items):
        name = item.get(key) if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        line = items.item_lines[index] if index < len(items.item_lines) else 0
        if name in seen:
            found.append((name, line, seen[name]))
        else:
            seen[name] = line
    return found
