"""The garbage collector while a poller runs: the start-up heap frozen, full collections rarer.

Measured (BENCHMARKS.md, "Where the CPU goes"): with CPython's defaults a polling process spent about a quarter of
its CPU in the collector, nearly all of it in full (generation 2) collections, each of which walks every object the
process has made since it started — imports, the ORM's and the web framework's tables, the SNMP families — although
none of them ever becomes garbage. A poll makes many short-lived containers (var-binds, rows, outcomes), so the
young generations fill quickly and a full collection came every few seconds.

So while a poller runs: the heap made before it is moved to the collector's permanent generation (`gc.freeze()`;
reference counting still frees those objects, only cycles among them wait); the youngest generation is collected
after 10,000 new containers instead of 700, so what a poll makes mostly dies before it is promoted; and a full
collection waits for 100 collections of the middle generation instead of 10 (CPython's own rule — at most when the
objects that survived since the last one are a quarter of the old heap — still applies). Measured at 2,000 devices
(CPU per poll, event loop + writer): 4.5–5.0 ms with the defaults, 3.7–4.1 ms with the heap frozen and full
collections rarer, 3.7–4.2 ms with the larger young generation as well (and 160 young collections a round, not
2,500). Undone when the last poller of the process stops, so a process that hosts several (tests) ends as it began.
"""

from __future__ import annotations

import gc
import threading

YOUNG = 10_000  # new containers before a young collection (CPython's default: 700)
FULL_AFTER = 100  # middle-generation collections before a full one (CPython's default: 10)

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None


def settle() -> None:
    """A poller starts: freeze the heap made so far and make full collections rarer (the first holder does it)."""
    global _holders, _saved
    with _lock:
        _holders += 1
        if _holders > 1:
            return
        young, middle, full = gc.get_threshold()
        _saved = (young, middle, full)
        gc.freeze()
        gc.set_threshold(max(young, YOUNG), middle, max(full, FULL_AFTER))


def release() -> None:
    """A poller stopped: when it was the last, give the frozen heap back to the collector and restore its settings."""
    global _holders, _saved
    with _lock:
        if _holders == 0:
            return
        _holders -= 1
        if _holders or _saved is None:
            return
        gc.set_threshold(*_saved)
        _saved = None
        gc.unfreeze()


def holders() -> int:
    """Pollers of this process that hold the settled heap (for tests and /metrics)."""
    return _holders
