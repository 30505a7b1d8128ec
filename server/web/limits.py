"""Request body limits, enforced before anything parses a body (or authenticates the request from it).

An ASGI middleware, outermost in the app: a Content-Length over the limit is answered 413 before a byte of the
body is read; a chunked or under-declared body is counted as it arrives and answered 413 the moment it passes
the limit. A body within the limit is buffered (at most the limit) and, unless it is a form, its JSON nesting is
measured without recursion: deeper than the limit answers 400 before any JSON parser sees it.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_STRUCTURE = re.compile(rb'["\\\[\]{}]')
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """How large a request body may be, and how deep the JSON in it may nest."""

    max_bytes: int
    max_json_depth: int


def json_depth_over(body: bytes, limit: int) -> bool:
    """True when brackets in `body` (outside JSON strings) nest deeper than `limit`; linear, no recursion."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # cannot nest deeper than the number of openers
    depth, in_string, skip = 0, False, -1
    for match in _STRUCTURE.finditer(body):
        at = match.start()
        if at == skip:
            continue
        char = body[at]
        if in_string:
            if char == 0x5C:  # backslash: the next byte is escaped
                skip = at + 1
            elif char == 0x22:
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif char in (0x5D, 0x7D):
            depth -= 1
    return False


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB" if n >= 1024 * 1024 else f"{n // 1024} KiB" if n >= 1024 else f"{n} bytes"


class BodyLimitMiddleware:
    """Refuse oversized or too deeply nested request bodies before the app (and its sign-in checks) runs."""

    def __init__(self, app: App, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await self._refuse(scope, send, 400, "the Content-Length header is not a number")
                return
            if int(declared) > self.limits.max_bytes:
                await self._refuse(scope, send, 413, self._too_large())
                return
        elif b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (GET, HEAD, DELETE without one)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before sending its whole body
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limits.max_bytes:
                await self._refuse(scope, send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        if kind not in _FORMS and json_depth_over(body, self.limits.max_json_depth):
            await self._refuse(scope, send, 400, f"the JSON body is nested deeper than {self.limits.max_json_depth} levels")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: the disconnect a streaming response waits for

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {_megabytes(self.limits.max_bytes)} "
            "(the max_body_bytes setting)"
        )

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, message: str) -> None:
        path = str(scope.get("path", ""))
        if path.startswith("/api/") or path == "/metrics":
            body = json.dumps({"detail": message}).encode()
            kind = b"application/json"
        else:
            title = "Request too large" if status == 413 else "Bad request"
            body = (
                f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
                f"<body><h1>{title}</h1><p>{html.escape(message[0].upper() + message[1:])}.</p>"
                '<p><a href="/">Back to pocketnoc</a></p></body></html>'
            ).encode()
            kind = b"text/html; charset=utf-8"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", kind),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),  # the rest of the body is never read: do not reuse the connection
                    (b"cache-control", b"no-store"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
