"""What every importer shares: bounded JSON reading, safe names, the result to review and its YAML files."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agents.ssh_parsers import clean_text
from server.store.jsontypes import JsonValue

MAX_BYTES = 32 * 1024 * 1024  # a large Uptime Kuma backup with heartbeats is a few MB; this is far past it
MAX_ITEMS = 20_000


class ImportError_(Exception):
    """The input cannot be imported at all (not JSON, wrong shape, too large): one line for people."""


@dataclass
class Imported:
    """The inventory and channels to review, and a line per thing that could not be mapped."""

    devices: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    routes: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        """Report one thing not imported (names cleaned: the file's text is never trusted on a terminal)."""
        self.skipped.append(f"{shown(what, 120)}: {why}")


def shown(text: object, limit: int = 80) -> str:
    """A name from the input, safe to print: no control or escape characters, capped."""
    return clean_text(str(text), limit).replace("\n", " ")


def load_json(data: bytes, what: str) -> JsonValue:
    """Parse bounded JSON bytes; ImportError_ with one clear line on anything wrong."""
    if len(data) > MAX_BYTES:
        raise ImportError_(f"the {what} is {len(data)} bytes; at most {MAX_BYTES} are read")
    try:
        value: JsonValue = json.loads(data.decode("utf-8-sig"))
        return value
    except UnicodeDecodeError:
        raise ImportError_(f"the {what} is not UTF-8 text (a JSON file was expected)") from None
    except json.JSONDecodeError as exc:
        raise ImportError_(f"the {what} is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise ImportError_(f"the {what} nests too deeply to be an export") from None
    except ValueError:  # a number of more than 4,300 digits: Python refuses to convert it
        raise ImportError_(f"the {what} holds a number too long to be an export's") from None


def read_file(path: Path, what: str) -> JsonValue:
    """Read and parse a file without reading more than MAX_BYTES + 1 bytes of it."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ImportError_(f"cannot read {path}: {exc.strerror or exc}") from None
    return load_json(data, what)


_NOT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(raw: object, taken: set[str], fallback: str, lower: bool = False) -> str:
    """A pocketnoc name (letters, digits, . _ -; 64 at most) from any text, made unique among `taken`."""
    base = _NOT_NAME.sub("-", str(raw or "")).strip("-._")[:56] or fallback
    if lower:
        base = base.lower()
    name, n = base, 2
    while name in taken:
        name = f"{base}-{n}"
        n += 1
    taken.add(name)
    return name


def items(value: object, what: str) -> list[Any]:
    """A list from the input, or ImportError_ saying the shape is wrong."""
    if not isinstance(value, list):
        raise ImportError_(f"{what} is not a list")
    if len(value) > MAX_ITEMS:
        raise ImportError_(f"{what} has {len(value)} entries; at most {MAX_ITEMS} are imported at once")
    return value


HEADER = "# Written by `pocketnoc import` from {source}. Review it, then run: pocketnoc check-config {config}\n"


def write_files(result: Imported, out: Path, source: str, force: bool) -> list[Path]:
    """Write pocketnoc.yaml (including inventory.yaml, naming channels.yaml) into out; 0600, secrets inside."""
    files = {"pocketnoc.yaml": None, "inventory.yaml": None, "channels.yaml": None}
    paths = [out / name for name in files]
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise ImportError_(f"{existing[0]} exists; choose another --out directory or give --force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        head = HEADER.format(source=shown(source, 200), config=out / "pocketnoc.yaml")
        settings: dict[str, Any] = {"include": ["inventory.yaml"]}
        if result.channels:
            settings = {"settings": {"channels_file": "channels.yaml"}, **settings}
        texts = {
            "pocketnoc.yaml": head + dump(settings),
            "inventory.yaml": head + dump({"devices": result.devices}),
            "channels.yaml": head + "# Channel URLs hold secrets: keep this file private (it is written 0600).\n"
            + dump({"channels": result.channels, "routes": result.routes}),
        }
        written = []
        for path in paths:
            if path.name == "channels.yaml" and not result.channels:
                continue
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(texts[path.name])
            written.append(path)
        return written
    except OSError as exc:
        raise ImportError_(f"cannot write into {out}: {exc.strerror or exc}") from None


def dump(data: object) -> str:
    """Block-style YAML with keys in the order given."""
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120))
