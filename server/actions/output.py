"""Live run output: raw device bytes in, safe text out (whole lines, controls made visible as \\x1b, capped)."""

from __future__ import annotations

import asyncio
from typing import Any

from server.logsafe import visible

HOLD_MAX = 4096  # a line longer than this is shown in pieces rather than held back
TEXT_MAX = 2 * 1024 * 1024  # cleaned text kept per run, whatever the action's byte caps
AUDIT_EXCERPT = 4000


class LineCleaner:
    """Cleans a byte stream in whole lines, so escape sequences and UTF-8 characters are never cut in two."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> str:
        """Text of the complete lines received so far (held back: a partial last line)."""
        self._pending += data
        cut = self._pending.rfind(b"\n")
        if cut < 0 and len(self._pending) < HOLD_MAX:
            return ""
        end = cut + 1 if cut >= 0 else len(self._pending)
        part, self._pending = self._pending[:end], self._pending[end:]
        return _text(part)

    def flush(self) -> str:
        """Whatever is still held back, cleaned."""
        part, self._pending = self._pending, b""
        return _text(part) if part else ""


def _text(part: bytes) -> str:
    """UTF-8 (bad bytes replaced); a bare \\r (which lets later text overwrite earlier text) starts a new line."""
    return visible(part.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n"), multiline=True)


class Transcript:
    """Interleaved stdout/stderr chunks of one run, with a change signal for live viewers."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, str]] = []
        self.size = 0
        self.capped = False
        self.version = 0
        self._cleaners = {"stdout": LineCleaner(), "stderr": LineCleaner()}
        self._changed = asyncio.Event()

    def feed(self, stream: str, data: bytes) -> None:
        """Raw bytes from the device (on the event loop)."""
        self.add(stream, self._cleaners[stream].feed(data))

    def add(self, stream: str, text: str) -> None:
        """Our own narration (which quotes device answers) or cleaned device output: made visible once more."""
        if not text:
            return
        text = visible(text, multiline=True)
        room = TEXT_MAX - self.size
        if room <= 0:
            self.capped = True
            return
        if len(text) > room:
            text, self.capped = text[:room], True
        self.chunks.append((stream, text))
        self.size += len(text)
        self.touch()

    def close(self) -> None:
        """Emit what the cleaners still hold."""
        for stream, cleaner in self._cleaners.items():
            self.add(stream, cleaner.flush())

    def touch(self) -> None:
        """Wake every live viewer."""
        self.version += 1
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait(self, version: int, timeout: float) -> None:  # noqa: ASYNC109 - a heartbeat interval, not a deadline
        """Return when something changed after `version`, or after `timeout` seconds."""
        if self.version != version:
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    def merged(self) -> list[list[str]]:
        """Adjacent chunks of one stream joined, as stored."""
        out: list[list[str]] = []
        for stream, text in self.chunks:
            if out and out[-1][0] == stream:
                out[-1][1] += text
            else:
                out.append([stream, text])
        return out


def excerpt(output: list[Any], limit: int = AUDIT_EXCERPT) -> str:
    """The start and end of a run's output, for the audit log."""
    text = "".join(f"[stderr] {t}" if s == "stderr" else t for s, t in output)
    if len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + f"\n… {len(text) - limit} characters left out …\n" + text[-half:]
