"""Generic webhook: POST a JSON document to an http(s) URL; full HTTP status, Retry-After and dedup key."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import httpx

from agents.safety import parse_target
from server.notify import http
from server.notify.channels import ChannelError, checked_host, register
from server.notify.masking import mask
from server.notify.message import Note
from server.notify.outcome import Outcome, classify_http


class Webhook:
    """A JSON webhook; user:password in the URL becomes HTTP basic auth."""

    kind = "webhook"

    def __init__(self, url: str, allow_unsafe: bool = False) -> None:
        parts = urlsplit(url)
        self.auth: httpx.BasicAuth | None = None
        if parts.username is not None:
            self.auth = httpx.BasicAuth(parts.username, parts.password or "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        self.url = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        target = parse_target(self.url)  # raises UnsafeTarget: scheme, odd characters, literal link-local
        if target.ip is not None and not allow_unsafe:
            from agents.safety import check_address

            check_address(target.ip)
        self.host = target.host
        try:
            self.port = target.port or (443 if parts.scheme.lower() == "https" else 80)
        except ValueError:
            raise ChannelError("invalid port") from None
        self.allow_unsafe = allow_unsafe
        self._masked = mask(url, self.host)

    def display(self) -> str:
        """Scheme and host; user, password, path and query (where tokens live) are masked."""
        return self._masked.display

    async def send(self, note: Note, time_limit: float) -> Outcome:
        """POST the note as JSON; never follows redirects. A receiver's echo of the URL's secrets is redacted."""
        outcome = await self._post(note, time_limit)
        return replace(outcome, detail=self._masked.redact(outcome.detail))

    async def _post(self, note: Note, time_limit: float) -> Outcome:
        refused = await checked_host(self.host, self.port, self.allow_unsafe)
        if refused is not None:
            return refused
        body = {
            "dedup_key": note.dedup_key,
            "kind": note.kind,
            "title": note.heading,
            "text": note.text,
            "severity": note.severity,
            "alert": note.payload,
        } | ({"link": note.link} if note.link else {})  # no link without base_url, never a relative one
        headers = {
            "Content-Type": "application/json",
            "X-Pocketnoc-Dedup-Key": note.dedup_key,
            "X-Pocketnoc-Kind": note.kind,
        }
        try:
            content = json.dumps(body, ensure_ascii=True).encode()
            auth = self.auth or httpx.USE_CLIENT_DEFAULT
            response = await http.client().post(self.url, content=content, headers=headers, auth=auth, timeout=time_limit)
        except httpx.TimeoutException:
            return Outcome(False, "timeout", f"no answer within {time_limit:.0f}s")
        except httpx.HTTPError as exc:
            return Outcome(False, "connect", str(exc)[:300] or type(exc).__name__)
        return classify_http(response.status_code, response.headers.get("retry-after"), response.text[:300])


register("webhook", Webhook, ("http", "https"))
