"""Channel kind `jsonl`: append each notification as one JSON line to a local file (jsonl:///var/log/pocketnoc.jsonl)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import unquote, urlsplit

from server.notify.channels import ChannelError, register
from server.notify.message import Note
from server.notify.outcome import Outcome


class JsonLines:
    """One file; the dedup key is in every line, so a reader can drop a repeat."""

    kind = "jsonl"

    def __init__(self, url: str, allow_unsafe: bool = False) -> None:
        path = unquote(urlsplit(url).path)
        if not path.startswith("/") or "\x00" in path:
            raise ChannelError("jsonl:// needs an absolute file path, e.g. jsonl:///var/log/pocketnoc.jsonl")
        self.path = Path(path)

    def display(self) -> str:
        return f"jsonl://{self.path}"

    async def send(self, note: Note, time_limit: float) -> Outcome:
        line = json.dumps({"dedup_key": note.dedup_key, "kind": note.kind, "severity": note.severity,
                           "title": note.heading, "text": note.text}, ensure_ascii=True)
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            return Outcome(False, "error", f"cannot write {self.path}: {exc.strerror}")
        return Outcome(True, "written")

    def _append(self, line: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def setup() -> None:
    """The entry point: register the channel kind for jsonl:// URLs."""
    register("jsonl", JsonLines, schemes=("jsonl",))
