"""Every other service through Apprise URLs (ntfy, Telegram, Slack, Teams, Discord, Pushover, Gotify, Matrix, json:// ...).

Apprise answers only yes or no, and its plugins call `requests` themselves (no session can be handed in). So a
send is watched on its own thread only, and nothing of requests or Apprise is patched:
- every connection the sending thread opens, redirect hops included, is checked against the outbound-address
  policy when it connects (a Python audit hook on `socket.connect`, inert on every other thread);
- the HTTP answers its plugin gets are read by a profile function set on the sending thread for that send alone,
  so permanent 4xx answers are dead-lettered rather than retried and a 429/503's Retry-After is honoured, as for
  our own webhooks; a plugin's log line ("error=400") is the fallback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

import apprise
import requests.adapters

from agents.safety import UnsafeTarget, check_address, check_host_name, normalise_ip
from server.notify.channels import ChannelError, checked_host, register
from server.notify.masking import mask
from server.notify.message import Note, clean
from server.notify.outcome import Outcome, classify_http

# Local desktop buses and raw-socket protocols: not web services; refused unless an admin allows them.
UNSAFE_SCHEMES = frozenset(
    {"dbus", "kde", "qt", "glib", "gio", "gnome", "macosx", "windows", "syslog", "rsyslog", "mqtt", "mqtts", "xmpp",
     "xmpps", "irc", "ircs", "smpp", "smpps", "blink1", "aprs", "amqp", "amqps", "nostr", "file"}
)
# Schemes whose URL host is the server contacted (self-hosted services): its addresses are checked before sending.
HOST_SCHEMES = frozenset(
    {"json", "jsons", "xml", "xmls", "form", "forms", "ntfy", "ntfys", "gotify", "gotifys", "matrix", "matrixs", "mmost",
     "mmosts", "rocket", "rockets", "ncloud", "nclouds", "nctalk", "nctalks", "hassio", "hassios", "apprise", "apprises",
     "mailto", "mailtos", "kodi", "kodis", "xbmc", "xbmcs", "emby", "embys", "signal", "signals", "synology", "synologys",
     "workflow", "workflows", "lametric", "lametrics", "opsgenie", "pagertree", "gorush", "gorushs"}
)
_STATUS = re.compile(r"error=(\d{3})\b")


class _ThreadLog(logging.Handler):
    """Collects Apprise's log lines per sending thread (threads send at the same time)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.buffers: dict[int, list[str]] = {}
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        buffer = self.buffers.get(threading.get_ident())
        if buffer is not None and len(buffer) < 20:
            try:
                buffer.append(record.getMessage()[:500])
            except Exception:  # a plugin's bad format string must not break delivery
                buffer.append(str(record.msg)[:500])

    def start(self) -> list[str]:
        buffer: list[str] = []
        with self.guard:
            self.buffers[threading.get_ident()] = buffer
        return buffer

    def stop(self) -> None:
        with self.guard:
            self.buffers.pop(threading.get_ident(), None)


_CAPTURE = _ThreadLog()
logging.getLogger("apprise").addHandler(_CAPTURE)
_NO_ANSWER: tuple[int, str | None] | None = None
_ADAPTER_SEND = requests.adapters.HTTPAdapter.send.__code__  # one call per HTTP request, each redirect hop too


@dataclass
class _Watch:
    """What one send on this thread saw: per HTTP request (status, Retry-After) or no answer; a refused address."""

    guard: bool  # check every address this thread connects to (off when an admin allowed unsafe targets)
    answers: list[tuple[int, str | None] | None] = field(default_factory=list)
    refused: str | None = None
    slots: dict[int, int] = field(default_factory=dict)  # id(frame of HTTPAdapter.send) -> its index in answers


_SENDING = threading.local()  # .watch: the _Watch of the Apprise send running on this thread, else None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Refuse a connection of a watched send to an address the policy refuses (any hop, any protocol)."""
    if event != "socket.connect":
        return
    watch: _Watch | None = getattr(_SENDING, "watch", None)
    address = args[1] if len(args) > 1 else None
    if watch is None or not watch.guard or not isinstance(address, tuple) or not isinstance(address[0], str):
        return
    try:
        check_address(address[0], allow_link_local=False)
    except UnsafeTarget as exc:
        watch.refused = str(exc)[:300]
        raise ConnectionRefusedError(f"refused by policy: {exc}") from None  # an OSError: requests' own error path


sys.addaudithook(_audit)


def _profile(frame: FrameType, event: str, arg: object) -> None:
    """On a watched send's thread: note each HTTPAdapter.send and the answer it returns (none when it raised)."""
    if frame.f_code is not _ADAPTER_SEND or event not in ("call", "return"):
        return
    watch: _Watch | None = getattr(_SENDING, "watch", None)
    if watch is None:
        return
    if event == "call":
        if len(watch.answers) < 20:
            watch.slots[id(frame)] = len(watch.answers)
            watch.answers.append(_NO_ANSWER)
        return
    slot = watch.slots.pop(id(frame), None)
    if slot is not None and isinstance(arg, requests.Response):
        watch.answers[slot] = (int(arg.status_code), arg.headers.get("Retry-After"))


@contextmanager
def _watched(guard: bool) -> Iterator[_Watch]:
    """Watch the Apprise send run inside on this thread; the previous profile function comes back after."""
    watch = _Watch(guard)
    previous = sys.getprofile()
    _SENDING.watch = watch
    sys.setprofile(_profile)
    try:
        yield watch
    finally:
        sys.setprofile(previous)
        _SENDING.watch = None


def _strict_ip(host: str) -> Any:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _instantiate(url: str) -> Any:
    return apprise.Apprise.instantiate(url, suppress_exceptions=True)


class AppriseChannel:
    """One Apprise URL."""

    kind = "apprise"

    def __init__(self, url: str, allow_unsafe: bool = False) -> None:
        self.url = url
        self.scheme = url.split("://", 1)[0].lower()
        if self.scheme in UNSAFE_SCHEMES and not allow_unsafe:
            raise ChannelError(f"refused: {self.scheme}:// is not a web service (an admin may set allow_unsafe)")
        plugin = _instantiate(url)
        if plugin is None:
            raise ChannelError(f"not a URL Apprise understands: {self.scheme}://…")
        host = str(getattr(plugin, "host", "") or "")
        self.host = host
        self.port = int(getattr(plugin, "port", 0) or (443 if getattr(plugin, "secure", False) else 80))
        if host:
            check_host_name(host)
            # Token-style URLs (tgram://123:abc/...) carry no host: only a real address literal is checked there.
            literal = normalise_ip(host) if self.scheme in HOST_SCHEMES else _strict_ip(host)
            if literal is not None and not allow_unsafe:
                check_address(literal)
        self.allow_unsafe = allow_unsafe
        # Apprise's privacy URL keeps user names and a token in the host part (ntfy://TOPIC): our one rule instead.
        self._masked = mask(url, host if self.scheme in HOST_SCHEMES else "")

    def display(self) -> str:
        """Scheme and the self-hosted server's name; every other part (users, tokens, topics, rooms) masked."""
        return self._masked.display

    def _send_sync(self, note: Note, timeout: float) -> Outcome:
        plugin = _instantiate(self.url)
        if plugin is None:
            return Outcome(False, "apprise", "the URL no longer parses", permanent=True)
        plugin.socket_connect_timeout = min(timeout, 30.0)
        plugin.socket_read_timeout = timeout
        if isinstance(getattr(plugin, "headers", None), dict):
            plugin.headers["X-Pocketnoc-Dedup-Key"] = note.dedup_key
        if isinstance(getattr(plugin, "payload_extras", None), dict):
            plugin.payload_extras["dedup_key"] = note.dedup_key
        kind = apprise.NotifyType.INFO
        if note.kind == "resolve":
            kind = apprise.NotifyType.SUCCESS
        elif note.severity == "critical" or note.kind == "system":
            kind = apprise.NotifyType.FAILURE
        elif note.severity == "warning":
            kind = apprise.NotifyType.WARNING
        buffer = _CAPTURE.start()
        try:
            with _watched(guard=not self.allow_unsafe) as watch:
                ok = bool(plugin.notify(body=note.text, title=note.heading, notify_type=kind))
        except Exception as exc:  # a plugin bug is a failed attempt, not a crashed worker
            return Outcome(False, "apprise", clean(f"{type(exc).__name__}: {exc}"))
        finally:
            _CAPTURE.stop()
        if watch.refused:  # a connection (a redirect hop) went to an address the policy refuses: not worth retrying
            return Outcome(False, "refused", f"{watch.refused} (an admin may set allow_unsafe)", permanent=True)
        answers = watch.answers
        if ok:
            return Outcome(True, "apprise ok")
        detail = clean(" | ".join(buffer)) or "the service refused or did not answer"
        last = answers[-1] if answers else None
        if last is not None and last[0] >= 400:  # the last request's answer failed the send (redirects came before)
            code, retry_after = last
        elif answers:  # the last request got no answer (or a redirect nobody followed): a transient failure
            return Outcome(False, "apprise", detail)
        else:
            codes = [int(m) for line in buffer for m in _STATUS.findall(line)]
            if not codes:
                return Outcome(False, "apprise", detail)
            code, retry_after = codes[-1], None
        result = classify_http(code, retry_after, detail)
        return Outcome(False, f"apprise error={code}", detail, permanent=result.permanent, retry_after=result.retry_after)

    async def send(self, note: Note, time_limit: float) -> Outcome:
        """Check a self-hosted service's addresses, then notify in a thread (Apprise plugins block)."""
        if self.host and self.scheme in HOST_SCHEMES:
            refused = await checked_host(self.host, self.port, self.allow_unsafe)
            if refused is not None:
                return refused
        outcome = await asyncio.to_thread(self._send_sync, note, time_limit)
        return replace(outcome, detail=self._masked.redact(outcome.detail))  # plugins log topics and URLs


register("apprise", AppriseChannel)
