"""Every other service through Apprise URLs (ntfy, Telegram, Slack, Teams, Discord, Pushover, Gotify, Matrix, json:// ...).

Apprise answers only yes or no. The HTTP answers its plugins get are observed per sending thread (every plugin
talks HTTP through requests), so permanent 4xx answers are dead-lettered rather than retried and a 429/503's
Retry-After is honoured, as for our own webhooks; a plugin's log line ("error=400") is the fallback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import threading
from dataclasses import replace
from typing import Any

import apprise
import requests.adapters

from agents.safety import UnsafeTarget, check_address, check_host_name, check_target, normalise_ip
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
_ANSWERS = threading.local()  # .seen: per HTTP request while this thread sends, (status, Retry-After) or None
_NO_ANSWER: tuple[int, str | None] | None = None


def _observe_answers() -> None:
    """Wrap requests' adapter send once: a sending thread sees, per request (each redirect hop is one), the status and
    Retry-After of its answer — or that it got none (connection refused, timeout). Nothing else changes."""
    original = requests.adapters.HTTPAdapter.send
    if getattr(original, "pocketnoc_observed", False):
        return

    def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        guard = getattr(_ANSWERS, "guard", None)
        if guard is not None:  # every request, redirect hops included: a 307 to a metadata address is refused here
            try:
                check_target(str(request.url), allow_link_local=False)
            except UnsafeTarget as exc:
                if not str(exc).startswith("cannot resolve"):  # a DNS failure is the request's own (transient) failure
                    _ANSWERS.refused = str(exc)[:300]
                    raise requests.exceptions.ConnectionError(f"refused by policy: {exc}") from None
        seen = getattr(_ANSWERS, "seen", None)
        if seen is None or len(seen) >= 20:
            return original(self, request, *args, **kwargs)
        seen.append(_NO_ANSWER)
        slot = len(seen) - 1
        response = original(self, request, *args, **kwargs)  # raises on no answer: the slot stays "no answer"
        seen[slot] = (int(response.status_code), response.headers.get("Retry-After"))
        return response

    send.pocketnoc_observed = True  # type: ignore[attr-defined]
    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


_observe_answers()


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
        answers: list[tuple[int, str | None] | None] = []
        _ANSWERS.seen = answers
        _ANSWERS.guard = None if self.allow_unsafe else True
        _ANSWERS.refused = None
        try:
            ok = bool(plugin.notify(body=note.text, title=note.heading, notify_type=kind))
        except Exception as exc:  # a plugin bug is a failed attempt, not a crashed worker
            return Outcome(False, "apprise", clean(f"{type(exc).__name__}: {exc}"))
        finally:
            _ANSWERS.seen = _ANSWERS.guard = None
            _CAPTURE.stop()
        refused = getattr(_ANSWERS, "refused", None)
        if refused:  # a request (a redirect hop) went to an address the policy refuses: not worth retrying
            _ANSWERS.refused = None
            return Outcome(False, "refused", f"{refused} (an admin may set allow_unsafe)", permanent=True)
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
