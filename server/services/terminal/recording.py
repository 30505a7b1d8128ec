"""A session's recording as asciicast v2 (the format asciinema plays): a header line, then one JSON event per line.

Events are [seconds since start, "o" | "i" | "r", text]. Bytes from the server are decoded incrementally (a character
split between two reads stays whole; invalid bytes become U+FFFD), so every line is valid JSON whatever the server sends.
Lines are cut into chunks of whole lines, which the manager seals and stores as they fill.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass, field

CHUNK_BYTES = 64 * 1024  # a chunk is sealed and stored when this much is waiting
MAX_BYTES = 64 * 1024 * 1024  # a recording stops growing here (the session is ended: nothing runs unrecorded)


@dataclass(frozen=True, slots=True)
class Header:
    """Who, where, why: what the asciicast header carries besides the window size."""

    cols: int
    rows: int
    started: float
    title: str
    user: str
    device: str
    reason: str


@dataclass
class Recorder:
    """Builds the lines of one recording; take() hands over whole lines ready to store."""

    header: Header
    pending: list[str] = field(default_factory=list)
    pending_bytes: int = 0
    total_bytes: int = 0
    seq: int = 0
    _out: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))
    _in: codecs.IncrementalDecoder = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def __post_init__(self) -> None:
        h = self.header
        first = {
            "version": 2, "width": h.cols, "height": h.rows, "timestamp": int(h.started), "title": h.title,
            "env": {"TERM": "xterm-256color"},
            "pocketnoc": {"user": h.user, "device": h.device, "reason": h.reason},
        }  # fmt: skip
        self._add(json.dumps(first))  # ASCII only: no U+2028 or NEL that a reader might take for a line break

    @property
    def full(self) -> bool:
        """The recording reached MAX_BYTES."""
        return self.total_bytes >= MAX_BYTES

    def _add(self, line: str) -> None:
        size = len(line.encode("utf-8", "replace")) + 1
        self.pending.append(line)
        self.pending_bytes += size
        self.total_bytes += size

    def _event(self, at: float, kind: str, text: str) -> None:
        if text:
            self._add(json.dumps([round(max(at - self.header.started, 0.0), 6), kind, text]))

    def output(self, at: float, data: bytes) -> None:
        """Bytes the server sent."""
        self._event(at, "o", self._out.decode(data))

    def input(self, at: float, data: bytes) -> None:
        """Bytes the user typed or pasted."""
        self._event(at, "i", self._in.decode(data))

    def resize(self, at: float, cols: int, rows: int) -> None:
        """The window changed size."""
        self._event(at, "r", f"{cols}x{rows}")

    def close(self, at: float) -> None:
        """Flush the decoders (a trailing partial character becomes U+FFFD)."""
        self._event(at, "o", self._out.decode(b"", final=True))
        self._event(at, "i", self._in.decode(b"", final=True))

    @property
    def ready(self) -> bool:
        """Enough is waiting to be stored as a chunk."""
        return self.pending_bytes >= CHUNK_BYTES

    def take(self) -> tuple[int, str] | None:
        """The next chunk (sequence number, whole lines), or None when nothing waits."""
        if not self.pending:
            return None
        lines = "".join(line + "\n" for line in self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        self.seq += 1
        return self.seq, lines
