"""Notification channels: one module per kind, one registry; a channel turns a Note into one delivery attempt.

Built-in kinds register here through the same `register` (and the same loader, agents.plugins) an add-on uses:
`webhook` (plain http/https URLs, a JSON POST), `email` (smtp:// and smtps://), `apprise` (every other Apprise URL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agents import plugins
from agents.safety import UnsafeTarget, check_target_async
from server.notify.message import Note
from server.notify.outcome import Outcome

DEFAULT_CHANNELS = ("server.notify.channels.webhook", "server.notify.channels.email", "server.notify.channels.apprise_channel")
FALLBACK_KIND = "apprise"


class ChannelError(ValueError):
    """The URL is not usable as a channel, or policy refuses it; str(exc) says why."""


class Channel(Protocol):
    """A configured destination."""

    kind: str

    def display(self) -> str:
        """The URL with every secret masked, for lists and logs."""
        ...

    async def send(self, note: Note, time_limit: float) -> Outcome:
        """One delivery attempt; never raises for delivery problems (they are Outcomes)."""
        ...


Factory = Callable[[str, bool], Channel]
REGISTRY: dict[str, Factory] = {}
SCHEMES: dict[str, str] = {}


def register(kind: str, factory: Factory, schemes: tuple[str, ...] = ()) -> None:
    """Add a channel kind; URLs with these schemes go to it (unclaimed schemes go to the fallback kind)."""
    REGISTRY[kind] = factory
    for scheme in schemes:
        SCHEMES[scheme] = kind


def load_builtins() -> None:
    """Import the built-in channel modules and every `pocketnoc.channels` plug-in (each registers itself)."""
    plugins.load(plugins.CHANNELS, DEFAULT_CHANNELS)


def scheme_of(url: str) -> str:
    """The lower-case scheme of a URL ('' when there is none)."""
    head, sep, _rest = url.partition("://")
    return head.strip().lower() if sep and head.replace("+", "").replace("-", "").replace(".", "").isalnum() else ""


def kind_of(url: str) -> str:
    """Which channel kind handles this URL."""
    load_builtins()
    return SCHEMES.get(scheme_of(url), FALLBACK_KIND)


def build(url: str, allow_unsafe: bool = False) -> Channel:
    """A channel for a URL; ChannelError when it is malformed or refused by policy."""
    url = url.strip()
    if not url or len(url) > 2000:
        raise ChannelError("a channel URL is 1 to 2000 characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        raise ChannelError("control characters in the channel URL")
    if not scheme_of(url):
        raise ChannelError("a channel URL starts with a scheme, e.g. https://, smtp:// or ntfy://")
    kind = kind_of(url)
    try:
        return REGISTRY[kind](url, allow_unsafe)
    except UnsafeTarget as exc:
        raise ChannelError(f"refused: {exc} (an admin may set allow_unsafe)") from None


async def checked_host(host: str, port: int, allow_unsafe: bool) -> Outcome | None:
    """Resolve and check a destination right before sending; an Outcome (permanent) when policy refuses it."""
    try:
        await check_target_async(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}", allow_link_local=allow_unsafe)
    except UnsafeTarget as exc:
        text = str(exc)
        if text.startswith("cannot resolve"):
            return Outcome(False, "DNS", text[:300])
        return Outcome(False, "refused", f"{text[:300]} (an admin may set allow_unsafe)", permanent=True)
    return None
