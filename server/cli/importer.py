"""`pocketnoc import uptime-kuma|librenms FILE --out DIR`: config files to review, and what could not be mapped."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from server.config.loader import load_config
from server.config.yamlsrc import ConfigError
from server.imports.common import Imported, ImportError_, read_file, write_files
from server.imports.sources import SOURCES


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Callable[[argparse.ArgumentParser], None]
) -> None:
    """`pocketnoc import SOURCE FILE --out DIR`."""
    p = sub.add_parser("import", help="write config files to review from an Uptime Kuma backup or a LibreNMS device list")
    p.add_argument("source", choices=sorted(SOURCES), help="uptime-kuma: its JSON backup; librenms: JSON of /api/v0/devices")
    p.add_argument("file", type=Path, help="the exported JSON file")
    p.add_argument("--out", type=Path, required=True, help="directory for pocketnoc.yaml, inventory.yaml, channels.yaml")
    p.add_argument("--force", action="store_true", help="overwrite files already in --out")
    common(p)


def run(source: str, data: object) -> Imported:
    """Convert parsed JSON of a source (for the CLI and the admin page alike)."""
    return SOURCES[source][1](data)


def report_lines(result: Imported) -> list[str]:
    """What was imported and, line by line, what was not (no secret is ever in these lines)."""
    checks = sum(len(d.get("checks") or []) for d in result.devices)
    lines = [f"imported: {len(result.devices)} devices, {checks} checks, {len(result.channels)} channels"]
    lines += [f"note: {n}" for n in result.notes]
    lines += [f"not imported: {s}" for s in result.skipped]
    return lines


def cmd_import(args: argparse.Namespace) -> int:
    """Read, convert, write, then validate what was written as check-config would."""
    what = SOURCES[args.source][0]
    try:
        result = run(args.source, read_file(args.file, what))
        written = write_files(result, args.out, f"{what} {args.file.name}", args.force)
    except ImportError_ as exc:
        print(f"pocketnoc: {exc}", file=sys.stderr)
        return 2
    for line in report_lines(result):
        print(line)
    for path in written:
        print(f"wrote {path}")
    try:
        load_config(args.out / "pocketnoc.yaml")
    except ConfigError as exc:  # an importer bug: say so plainly, the files stay for a look
        for problem in exc.problems:
            print(f"check-config: {problem}", file=sys.stderr)
        return 2
    print(f"review them, then: pocketnoc check-config {args.out / 'pocketnoc.yaml'}")
    return 0
