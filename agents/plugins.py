"""The one door for extensions: built-in modules and installed plug-ins are loaded the same way.

A plug-in is a Python distribution that declares entry points in one of the groups below; each entry
point names a module (imported, it calls the room's `register`) or a `module:function` (called with no
arguments, it calls `register`). pocketnoc's own collectors and channels are loaded through this same
function from their built-in lists, so the door stays honest (Datasette's DEFAULT_PLUGINS idea).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import NamedTuple

COLLECTORS = "pocketnoc.collectors"
CHANNELS = "pocketnoc.channels"
log = logging.getLogger("pocketnoc.plugins")
_loaded: dict[str, list[Loaded]] = {}


class Loaded(NamedTuple):
    """One extension module that was loaded (or failed to), and where it came from."""

    group: str
    name: str
    ref: str
    source: str  # "built-in" or the distribution that declared it
    error: str | None = None


def _load_ref(ref: str) -> None:
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name.strip())
    if attr:
        setup: Callable[[], object] = getattr(module, attr.strip())
        setup()


def load(group: str, builtin: Sequence[str]) -> list[Loaded]:
    """Load the built-in modules, then every installed plug-in of `group` (once per process); errors are logged."""
    if group in _loaded:
        return _loaded[group]
    wanted = [Loaded(group, ref.rsplit(".", 1)[-1], ref, "built-in") for ref in builtin]
    for ep in entry_points(group=group):
        source = ep.dist.name if ep.dist is not None else "unknown distribution"
        if ep.value not in builtin:
            wanted.append(Loaded(group, ep.name, ep.value, source))
    done: list[Loaded] = []
    for item in wanted:
        try:
            _load_ref(item.ref)
        except Exception as exc:  # a broken plug-in disables itself, not the server
            log.error("%s plug-in %r (%s, from %s) not loaded: %s", group, item.name, item.ref, item.source, exc)
            item = item._replace(error=f"{exc.__class__.__name__}: {exc}")
        done.append(item)
    _loaded[group] = done
    return done


def forget(group: str) -> None:
    """Load `group` again on the next load() (after installing a plug-in in a running process, e.g. in tests)."""
    _loaded.pop(group, None)
