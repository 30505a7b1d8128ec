"""xterm.js is served from pocketnoc itself: the committed dist files match their checksums and the locked versions,
carry their licence, and no template loads a script or stylesheet from elsewhere."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from server.services.terminal.recording import Header, Recorder

WEB = Path(__file__).resolve().parent.parent.parent / "web"
VENDOR = WEB / "static" / "vendor" / "xterm"


def test_the_vendored_files_match_their_checksums_and_the_lock() -> None:
    sums = {}
    for line in (VENDOR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert set(sums) == {"xterm.js", "xterm.css", "addon-fit.js"}
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]
    locked = json.loads((WEB / "package-lock.json").read_text())["packages"]
    for package, version in wanted.items():
        entry = locked[f"node_modules/{package}"]
        assert entry["version"] == version and entry["integrity"].startswith("sha512-"), package
    assert "Permission is hereby granted" in (VENDOR / "LICENSE").read_text()
    assert "Permission is hereby granted" in (VENDOR / "LICENSE.addon-fit").read_text()


def test_no_template_loads_code_from_another_site() -> None:
    outside = re.compile(r"""<(?:script|link)[^>]+(?:src|href)=["'](?:https?:)?//""", re.I)
    for template in (WEB / "templates").glob("*.html"):
        assert not outside.search(template.read_text()), template.name


def test_a_character_split_between_reads_stays_whole_and_lines_are_ascii_json() -> None:
    rec = Recorder(Header(80, 24, 1000.0, "t", "ann", "web-01", "why \u2028 not"))
    snowman = "☃".encode()
    rec.output(1000.5, b"a" + snowman[:1])
    rec.output(1001.0, snowman[1:] + b"\xff\x1b[0m\x85")
    rec.input(1001.5, b"ls\r")
    rec.close(1002.0)
    chunk = rec.take()
    assert chunk is not None and chunk[0] == 1
    lines = chunk[1].split("\n")
    assert lines[-1] == "" and all(line.isascii() for line in lines)
    header, *events = (json.loads(line) for line in lines[:-1])
    assert header["version"] == 2 and header["pocketnoc"]["device"] == "web-01"
    assert events == [[0.5, "o", "a"], [1.0, "o", "☃\ufffd\x1b[0m\ufffd"], [1.5, "i", "ls\r"]]
    assert rec.take() is None
