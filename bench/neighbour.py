"""A busy neighbour for the scale runs: one process spinning on one core, as another tenant of the machine would."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from bench.profiling import pid_cpu

SPIN = "while True:\n    pass\n"


class Neighbour:
    """`with Neighbour(): ...` keeps one core busy (a Python busy loop) and reports how busy it kept it."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.proc: subprocess.Popen[bytes] | None = None
        self._t0 = 0.0
        self.kind = "python busy loop (one process)" if enabled else "none"
        self.cpu_util = 0.0

    def __enter__(self) -> Neighbour:
        if self.enabled:
            self.proc = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.DEVNULL)
            self._t0 = time.perf_counter()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc is None:
            return
        if Path(f"/proc/{self.proc.pid}").exists():
            self.cpu_util = pid_cpu(self.proc.pid) / max(1e-9, time.perf_counter() - self._t0)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None
